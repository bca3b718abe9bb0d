"""A rotated photo: boxes drawn on the stored pixels stay on the red block in the YOLO output as
ultralytics loads it and in the TFRecord as a tag-honouring reader decodes it."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from cvpipe.data.exif import orientation
from cvpipe.detection.data import read_labels
from stages import convert
from tests.tfrecord_reader import parse_example, records

W, H = 96, 48  # the stored pixels
RED = (6, 28, 30, 44)  # x0, y0, x1, y1 of the red block in the stored pixels: the left part, low down


def voc_xml(filename: str, box: tuple[int, int, int, int]) -> str:
    """A LabelImg annotation: the image's stored size and one box, in stored-pixel coordinates."""
    x0, y0, x1, y1 = box
    return (f"<annotation><folder>images</folder><filename>{filename}</filename>"
            f"<size><width>{W}</width><height>{H}</height><depth>3</depth></size>"
            "<object><name>red block</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
            f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object></annotation>")


@pytest.fixture
def rotated(tmp_path) -> Path:
    """``rotated.jpg`` (EXIF Orientation 6, as a phone held upright writes) and ``plain.jpg`` (no EXIF)."""
    root = tmp_path / "photos"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    im = Image.new("RGB", (W, H), (0, 0, 255))
    im.paste((255, 0, 0), RED)
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(root / "images" / "rotated.jpg", quality=95, exif=exif)
    im.save(root / "images" / "plain.jpg", quality=95)
    for name in ("rotated", "plain"):
        (root / "annotations" / f"{name}.xml").write_text(voc_xml(f"{name}.jpg", RED))
    return root


def red_inside(rgb: np.ndarray, box: tuple[float, float, float, float]) -> bool:
    """Whether the box (in pixels), less a 2-pixel margin for JPEG's blur at the edges, is all red."""
    x0, y0, x1, y1 = (round(v) for v in box)
    inner = rgb[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].astype(int)
    return inner.size > 0 and bool((inner[..., 0] > 200).all() and (inner[..., 1:] < 60).all())


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_the_fixture_is_a_photo_that_readers_turn(rotated):
    # what makes the converters' work necessary: cv2 (so ultralytics) turns the stored pixels, PIL does not
    import cv2
    from ultralytics.data.utils import exif_size

    src = rotated / "images" / "rotated.jpg"
    assert orientation(src.read_bytes()) == 6
    assert cv2.imread(str(src)).shape == (W, H, 3)
    with Image.open(src) as im:
        assert im.size == (W, H) and exif_size(im) == (H, W)
        assert red_inside(np.asarray(im.convert("RGB")), RED)


def test_yolo_image_has_the_stored_pixels_the_label_refers_to_as_ultralytics_loads_it(rotated, tmp_path):
    import cv2
    from ultralytics.data.utils import exif_size
    from ultralytics.utils.patches import imread

    before = snapshot(rotated / "images")
    out = tmp_path / "yolo"
    report = convert.run("voc-yolo", out, rotated / "annotations", rotated / "images", val_fraction=0)
    assert report["image_links"] == {"hardlink": 1, "orientation_reset": 1}

    image = out / "images" / "train" / "rotated.jpg"
    assert not image.is_symlink() and image.stat().st_ino != (rotated / "images" / "rotated.jpg").stat().st_ino
    assert orientation(image.read_bytes()) == 1
    with Image.open(image) as im:
        assert exif_size(im) == (W, H)
    (label,) = read_labels(out / "labels" / "train" / "rotated.txt", W, H)  # denormalised by the stored size
    assert label[0] == 0 and max(abs(a - b) for a, b in zip(label[1:], RED, strict=True)) < 1e-3
    for bgr in (cv2.imread(str(image)), imread(str(image))):  # cv2's own, and ultralytics' loader
        assert bgr.shape == (H, W, 3)
        assert red_inside(bgr[..., ::-1], label[1:])

    assert (out / "images" / "train" / "plain.jpg").stat().st_ino == (rotated / "images" / "plain.jpg").stat().st_ino
    assert snapshot(rotated / "images") == before  # the source is never modified


def test_tfrecord_embeds_the_stored_pixels_with_the_tag_reset_and_hashes_what_it_embeds(rotated, tmp_path):
    source = rotated / "images" / "rotated.jpg"
    original = source.read_bytes()
    before = snapshot(rotated / "images")
    out = tmp_path / "tf"
    report = convert.run("voc-tfrecord", out, rotated / "annotations", rotated / "images", val_fraction=0)
    assert report["orientation_reset"] == 1 and report["records"] == 2

    examples = {ex["image/filename"][0].decode(): ex for f in out.glob("*.record") for ex in map(parse_example, records(f))}
    ex = examples["rotated.jpg"]
    encoded = ex["image/encoded"][0]
    assert orientation(encoded) == 1
    assert len(encoded) == len(original) and sum(a != b for a, b in zip(encoded, original, strict=True)) in (1, 2)
    assert ex["image/key/sha256"][0].decode() == hashlib.sha256(encoded).hexdigest()
    assert (ex["image/height"][0], ex["image/width"][0]) == (H, W)
    with Image.open(io.BytesIO(encoded)) as im:
        upright = ImageOps.exif_transpose(im)  # a reader that honours the tag
        assert upright.size == (W, H)
        box = (ex["image/object/bbox/xmin"][0] * W, ex["image/object/bbox/ymin"][0] * H,
               ex["image/object/bbox/xmax"][0] * W, ex["image/object/bbox/ymax"][0] * H)
        assert red_inside(np.asarray(upright.convert("RGB")), box)

    plain = examples["plain.jpg"]
    assert plain["image/encoded"][0] == (rotated / "images" / "plain.jpg").read_bytes()
    assert snapshot(rotated / "images") == before  # the source is never modified


def test_reports_carry_no_orientation_count_when_no_image_has_a_tag(rotated, tmp_path):
    # outputs of data without the tag are byte for byte what they were (conversion.json included)
    (rotated / "images" / "rotated.jpg").unlink()
    (rotated / "annotations" / "rotated.xml").unlink()
    tf = convert.run("voc-tfrecord", tmp_path / "tf", rotated / "annotations", rotated / "images", val_fraction=0)
    yolo = convert.run("voc-yolo", tmp_path / "y", rotated / "annotations", rotated / "images", val_fraction=0)
    assert "orientation_reset" not in tf and yolo["image_links"] == {"hardlink": 1}
