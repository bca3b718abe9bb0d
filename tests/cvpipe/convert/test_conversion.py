"""YOLO and TFRecord conversion: exact boxes, real-data quirks, and agreement with ultralytics."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path

import pytest
import yaml

from cvpipe.core.errors import DataError
from cvpipe.detection.data import read_labels
from cvpipe.sources import voc
from cvpipe.sources.samples import coco as coco_sample
from cvpipe.sources.samples import generate
from cvpipe.sources.samples import voc as voc_sample
from stages import convert
from tests.tfrecord_reader import parse_example, records


@pytest.fixture(scope="module")
def underground(tmp_path_factory) -> Path:
    return generate("voc", tmp_path_factory.mktemp("voc") / "underground")


def voc_boxes(root: Path) -> dict[str, list[tuple]]:
    found = voc.read(root)
    out: dict[str, list[tuple]] = {}
    for b in found.boxes:
        out.setdefault(Path(b["path"]).stem, []).append((b["class_index"], b["x_min"], b["y_min"], b["x_max"], b["y_max"]))
    return out


def test_voc_to_yolo_and_back_within_a_pixel(underground, tmp_path):
    report = convert.run("voc-yolo", tmp_path / "yolo", underground / "annotations", underground / "images", val_fraction=0.25)
    expected = voc_boxes(underground)
    assert report["boxes"] == sum(map(len, expected.values()))
    seen = 0
    for label in (tmp_path / "yolo" / "labels").rglob("*.txt"):
        image = next((tmp_path / "yolo" / "images").rglob(f"{label.stem}.*"))
        from PIL import Image

        w, h = Image.open(image).size
        back = read_labels(label, w, h)
        for got, want in zip(sorted(back), sorted(expected[label.stem]), strict=True):
            assert got[0] == want[0] and max(abs(g - x) for g, x in zip(got[1:], want[1:], strict=True)) <= 1
        seen += len(back)
    assert seen == report["boxes"]
    assert set(report["images"]) == {"train", "val"} and sum(report["images"].values()) == voc_sample.IMAGES


def test_yolo_layout_data_yaml_and_linked_images(underground, tmp_path):
    out = tmp_path / "yolo"
    report = convert.run("voc-yolo", out, underground / "annotations", underground / "images", val_fraction=0.25)
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data == {"path": out.as_posix(), "train": "images/train", "val": "images/val", "nc": 3,
                    "names": {0: "platform sign", 1: "roundel", 2: "way out"}}
    assert report["image_links"] == {"hardlink": voc_sample.IMAGES}
    for image in (out / "images").rglob("*.*"):
        assert (out / "labels" / image.parent.name / f"{image.stem}.txt").is_file()
    assert any(p.suffix == ".JPG" for p in (out / "images").rglob("*"))


def test_splits_are_stable_when_images_are_added(underground, tmp_path):
    convert.run("voc-yolo", tmp_path / "a", underground / "annotations", underground / "images")
    before = {p.stem: p.parent.name for p in (tmp_path / "a" / "labels").rglob("*.txt")}
    extra = tmp_path / "more"
    (extra / "annotations").mkdir(parents=True)
    import shutil

    shutil.copytree(underground / "images", extra / "images")
    for x in (underground / "annotations").iterdir():
        shutil.copy(x, extra / "annotations" / x.name)
    shutil.copy(underground / "images" / "underground_001.jpg", extra / "images" / "zz_new.jpg")
    (extra / "annotations" / "zz_new.xml").write_text(
        (underground / "annotations" / "underground_001.xml").read_text().replace("underground_001.jpg", "zz_new.jpg"))
    convert.run("voc-yolo", tmp_path / "b", extra / "annotations", extra / "images")
    after = {p.stem: p.parent.name for p in (tmp_path / "b" / "labels").rglob("*.txt")}
    assert {k: after[k] for k in before} == before


def edit(root: Path, number: int, pattern: str, repl: str) -> None:
    path = root / "annotations" / f"underground_{number:03d}.xml"
    path.write_text(re.sub(pattern, repl, path.read_text(), count=1))


@pytest.fixture
def quirky(tmp_path) -> Path:
    root = generate("voc", tmp_path / "quirky")
    edit(root, 1, r"<xmax>\d+</xmax>", "<xmax>5000</xmax>")  # runs past the image
    edit(root, 2, r"<difficult>0</difficult>", "<difficult>1</difficult>")
    path = root / "annotations" / "underground_003.xml"
    path.write_text(re.sub(r"\s*<object>.*</object>", "", path.read_text(), flags=re.S))  # no objects
    return root


def test_clipping_difficult_and_background_images(quirky, tmp_path):
    report = convert.run("voc-yolo", tmp_path / "y", quirky / "annotations", quirky / "images")
    assert report["clipped"] == 1 and report["background_images"] == 1
    (empty,) = list((tmp_path / "y" / "labels").rglob("underground_003.txt"))
    assert empty.read_text() == ""  # a background image, not a dropped one
    clipped = next((tmp_path / "y" / "labels").rglob("underground_001.txt")).read_text().splitlines()[0].split()
    cx, w = float(clipped[1]), float(clipped[3])
    assert cx + w / 2 == pytest.approx(1.0, abs=1e-6)
    dropped = convert.run("voc-yolo", tmp_path / "d", quirky / "annotations", quirky / "images", drop_difficult=True)
    assert dropped["difficult_dropped"] == 1 and dropped["boxes"] == report["boxes"] - 1


def test_unknown_class_names_the_file_and_the_name(quirky, tmp_path):
    (tmp_path / "classes.txt").write_text("roundel\nway out\n")
    with pytest.raises(DataError) as err:
        convert.run("voc-yolo", tmp_path / "y", quirky / "annotations", quirky / "images", classes=tmp_path / "classes.txt")
    assert "annotations/underground_" in str(err.value) and "class 'platform sign' is not in the class map" in str(err.value)
    assert not (tmp_path / "y").exists()


def test_filename_escaping_the_images_folder_is_refused(quirky, tmp_path):
    edit(quirky, 4, r"<filename>[^<]+</filename>", "<filename>../../../etc/hosts</filename>")
    with pytest.raises(DataError, match="escapes the images folder"):
        convert.run("voc-yolo", tmp_path / "y", quirky / "annotations", quirky / "images")


def test_failed_conversion_leaves_the_previous_output(quirky, tmp_path):
    out = tmp_path / "y"
    convert.run("voc-yolo", out, quirky / "annotations", quirky / "images")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    edit(quirky, 5, r"<name>[^<]+</name>", "<name>bus stop</name>")
    (tmp_path / "classes.txt").write_text("platform sign\nroundel\nway out\n")
    with pytest.raises(DataError):
        convert.run("voc-yolo", out, quirky / "annotations", quirky / "images", classes=tmp_path / "classes.txt")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_simpsons_corner_order_and_zero_size_boxes(tmp_path):
    root = generate("simpsons", tmp_path / "s")
    rows = (root / "annotation.txt").read_text().splitlines()
    m = re.match(r"(.*?),(\d+),(\d+),(\d+),(\d+),(.*)", rows[0])
    rows[0] = f"{m[1]},{m[4]},{m[5]},{m[2]},{m[3]},{m[6]}"  # both corners swapped
    rows[1] = re.sub(r",(\d+),(\d+),(\d+),(\d+),", r",\1,\2,\1,\4,", rows[1])  # zero width
    (root / "annotation.txt").write_text("\n".join(rows) + "\n")
    report = convert.run("simpsons-yolo", tmp_path / "y", root / "annotation.txt", root / "simpsons_dataset")
    assert report["corners_ordered"] == 1 and report["zero_size_dropped"] == 1
    assert report["dropped"] == [{"annotation": "annotation.txt:2", "image": rows[1].split(",")[0].replace("./characters/", ""),
                                  "reason": "zero size", "box": pytest.approx(report["dropped"][0]["box"])}]
    assert report["boxes"] == 79
    names = {p.stem for p in (tmp_path / "y" / "labels").rglob("*.txt")}
    assert "bart_simpson__pic_0000" in names  # pic_0000.jpg exists for every character
    first = m[1].replace("./characters/", "").replace("/", "__").removesuffix(".jpg")
    (line,) = next((tmp_path / "y" / "labels").rglob(f"{first}.txt")).read_text().splitlines()
    assert float(line.split()[3]) > 0 and float(line.split()[4]) > 0


def test_coco_ids_map_to_contiguous_indices_and_the_mapping_is_written(tmp_path):
    root = generate("coco", tmp_path / "coco")
    out = tmp_path / "y"
    report = convert.run("coco-yolo", out, root / "annotations" / "instances_val2017.json", root / "val2017")
    mapping = list(csv.DictReader((out / "class_mapping.csv").open()))
    assert [(r["source_id"], r["index"], r["name"]) for r in mapping] == [
        ("1", "0", "circle"), ("3", "1", "square"), ("7", "2", "triangle"), ("90", "3", "ring")]
    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == {0: "circle", 1: "square", 2: "triangle", 3: "ring"}
    doc = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    crowds = sum(a["iscrowd"] for a in doc["annotations"])
    assert report["images"] == {"val": coco_sample.SPLITS["val2017"]} and report["crowd_skipped"] == crowds >= 1
    with_objects = {a["image_id"] for a in doc["annotations"] if not a["iscrowd"]}
    assert report["background_images"] == len(doc["images"]) - len(with_objects) >= 1
    classes = {int(line.split()[0]) for p in (out / "labels").rglob("*.txt") for line in p.read_text().splitlines()}
    assert classes <= {0, 1, 2}


def test_cls91to80_is_for_coco_only(tmp_path):
    root = generate("coco", tmp_path / "coco")
    with pytest.raises(DataError, match="is not COCO's: --cls91to80 is for COCO itself only"):
        convert.run("coco-yolo", tmp_path / "y", root / "annotations" / "instances_val2017.json", root / "val2017", cls91to80=True)
    with pytest.raises(ValueError, match="applies to coco only"):
        convert.run("voc-yolo", tmp_path / "y", root, root, cls91to80=True)


def test_malformed_coco_names_the_file(tmp_path):
    bad = tmp_path / "instances_train2017.json"
    bad.write_text('{"images": [{"id": "x", "file_name": "a.jpg"}], "categories": []}')
    (tmp_path / "img").mkdir()
    with pytest.raises(DataError, match=r"instances_train2017\.json: images\[0\]: id is \"x\", expected an integer"):
        convert.run("coco-yolo", tmp_path / "y", bad, tmp_path / "img")


def test_coco128_matches_ultralytics_convert_coco(realdata, tmp_path):
    """Same JSON, same class mapping: every box agrees with ultralytics' own converter within 1e-6."""
    from ultralytics.data.converter import convert_coco

    coco = realdata / "coco128"
    convert_coco(str(coco / "annotations"), str(tmp_path / "ul"), use_segments=False, cls91to80=True)
    ours = tmp_path / "ours"
    convert.run("coco-yolo", ours, coco / "annotations" / "instances_train2017.json", coco / "train2017", cls91to80=True)
    theirs = {p.stem: p for p in (tmp_path / "ul" / "labels" / "train2017").glob("*.txt")}
    mine = {p.stem: p for p in (ours / "labels").rglob("*.txt")}
    assert len(mine) == 128 and set(theirs) == set(mine) - {"000000000250", "000000000508"}
    assert mine["000000000250"].read_text() == "" and mine["000000000508"].read_text() == ""
    total = 0
    for stem, path in theirs.items():
        a = sorted(tuple(map(float, line.split())) for line in path.read_text().splitlines())
        b = sorted(tuple(map(float, line.split())) for line in mine[stem].read_text().splitlines())
        assert len(a) == len(b), stem
        for x, y in zip(a, b, strict=True):
            assert x[0] == y[0] and max(abs(p - q) for p, q in zip(x[1:], y[1:], strict=True)) <= 1e-6, (stem, x, y)
        total += len(a)
    assert total == 929
    names = yaml.safe_load((ours / "data.yaml").read_text())["names"]
    assert names[0] == "person" and names[79] == "toothbrush" and len(names) == 80
    # the 10 crowd regions: not in labels/, but in crowd/ for the evaluation to ignore detections on them
    doc = json.loads((coco / "annotations" / "instances_train2017.json").read_text())
    index = {c["id"]: k for k, c in enumerate(sorted(doc["categories"], key=lambda c: c["id"]))}
    files = {i["id"]: Path(i["file_name"]).stem for i in doc["images"]}
    sizes = {i["id"]: (i["width"], i["height"]) for i in doc["images"]}
    crowds = [a for a in doc["annotations"] if a["iscrowd"]]
    assert len(crowds) == 10
    for a in crowds:
        (crowd,) = (ours / "crowd").rglob(f"{files[a['image_id']]}.txt")
        w, h = sizes[a["image_id"]]
        x, y, bw, bh = a["bbox"]
        assert (index[a["category_id"]], x, y, x + bw, y + bh) in [
            tuple(round(v, 2) for v in row) for row in read_labels(crowd, w, h)], a["bbox"]
    assert sum(len(f.read_text().splitlines()) for f in (ours / "crowd").rglob("*.txt")) == 10


def test_voc_to_tfrecord_read_back_independently(underground, tmp_path):
    out = tmp_path / "tf"
    report = convert.run("voc-tfrecord", out, underground / "annotations", underground / "images", val_fraction=0.25, shards=3)
    files = sorted(p.name for p in out.glob("*.record"))
    assert files == [f"{s}-{k:05d}-of-00003.record" for s in ("train", "val") for k in range(3)]
    assert (out / "label_map.pbtxt").read_text().startswith("item {\n  id: 1\n  name: 'platform sign'\n}\nitem {\n  id: 2\n")
    expected = voc_boxes(underground)
    names = ["platform sign", "roundel", "way out"]
    examples = [parse_example(r) for f in sorted(out.glob("*.record")) for r in records(f)]
    assert len(examples) == voc_sample.IMAGES == report["records"]
    for ex in examples:
        filename = ex["image/filename"][0].decode()
        original = (underground / "images" / filename).read_bytes()
        assert ex["image/encoded"][0] == original
        assert ex["image/key/sha256"][0].decode() == hashlib.sha256(original).hexdigest()
        assert ex["image/format"] == [b"jpeg"]
        w, h = ex["image/width"][0], ex["image/height"][0]
        got = sorted(zip(ex["image/object/class/label"], ex["image/object/bbox/xmin"], ex["image/object/bbox/ymin"],
                         ex["image/object/bbox/xmax"], ex["image/object/bbox/ymax"], strict=True))
        want = sorted((c + 1, x0 / w, y0 / h, x1 / w, y1 / h) for c, x0, y0, x1, y1 in expected[Path(filename).stem])
        assert len(got) == len(want)
        for g, x in zip(got, want, strict=True):
            assert g[0] == x[0] and max(abs(p - q) for p, q in zip(g[1:], x[1:], strict=True)) <= 1e-6  # float32 on disk
        assert [t.decode() for t in ex["image/object/class/text"]] == [names[c - 1] for c in ex["image/object/class/label"]]
        assert ex["image/object/view"] == [b"Unspecified"] * len(got)
        assert len(ex["image/object/difficult"]) == len(ex["image/object/truncated"]) == len(got)


def test_tfrecord_crc_check_catches_corruption(underground, tmp_path):
    out = tmp_path / "tf"
    convert.run("voc-tfrecord", out, underground / "annotations", underground / "images")
    shard = out / "train-00000-of-00001.record"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="bad data CRC"):
        records(shard)


def test_coco_to_tfrecord_labels_are_one_based(tmp_path):
    root = generate("coco", tmp_path / "coco")
    out = tmp_path / "tf"
    convert.run("coco-tfrecord", out, root / "annotations" / "instances_train2017.json", root / "train2017")
    labels = {v for f in out.glob("*.record") for r in records(f) for v in parse_example(r)["image/object/class/label"]}
    assert labels <= {1, 2, 3} and 0 not in labels
    assert json.loads((out / "conversion.json").read_text())["records"] == coco_sample.SPLITS["train2017"]


def test_tfrecord_bytes_are_the_same_in_another_process(underground, tmp_path):
    """Protobuf maps serialise in any order unless asked not to; DVC's cache needs identical outputs."""
    import subprocess
    import sys

    from tests.conftest import REPO

    convert.run("voc-tfrecord", tmp_path / "a", underground / "annotations", underground / "images")
    subprocess.run([sys.executable, "-m", "stages.convert", "voc-tfrecord", "--annotations", str(underground / "annotations"),
                    "--images", str(underground / "images"), "--out", str(tmp_path / "b")], cwd=REPO, check=True,
                   capture_output=True, env={**__import__("os").environ, "PYTHONHASHSEED": "123"})
    for shard in (tmp_path / "a").glob("*.record"):
        assert shard.read_bytes() == (tmp_path / "b" / shard.name).read_bytes(), shard.name


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16_383, 16_384, 2_100_000])
@pytest.mark.parametrize("n_boxes", [0, 1, 5])
def test_spliced_example_is_byte_identical_to_protobufs_own(size, n_boxes):
    # the image bytes are framed by hand around protobuf's serialisation of the rest; every varint
    # width of the image's length (1, 2, 3 and 4 bytes) and the empty-object case must still agree
    from cvpipe.convert.dataset import CleanBox, Item
    from cvpipe.convert.tfrecord import example, example_parts, reference_example

    encoded = bytes(range(256)) * (size // 256) + bytes(size % 256)
    item = Item(Path("imgs/Straße 1.JPG"), "imgs/Straße 1.JPG", 640, 480, "train", "annotations/Straße 1.xml")
    boxes = [CleanBox(k % 3, 10.0 + k, 20.0, 300.5, 470.25, k % 2 == 0, k % 3 == 0, "Left", f"class {k}") for k in range(n_boxes)]
    assert example(item, boxes, encoded) == reference_example(item, boxes, encoded)
    head, body, tail = example_parts(item, boxes, encoded)
    assert body is encoded  # the image's bytes are written as read, not copied into a message
    parsed = parse_example(head + body + tail)
    assert parsed["image/encoded"] == [encoded] and len(parsed["image/object/bbox/xmin"]) == n_boxes


def test_reused_feature_message_carries_nothing_over_from_the_previous_image():
    # one message per thread is refilled for every image: 5 boxes, then none, then 1, in one thread
    from cvpipe.convert.dataset import CleanBox, Item
    from cvpipe.convert.tfrecord import example, reference_example

    for n_boxes in (5, 0, 1, 5, 0, 2):
        item = Item(Path(f"imgs/{n_boxes}.png"), f"imgs/{n_boxes}.png", 100 + n_boxes, 50, "train", f"a/{n_boxes}.xml")
        boxes = [CleanBox(k, 1.0 + k, 2.0, 30.0, 40.0, k == 1, k == 2, "Front", f"c{k}") for k in range(n_boxes)]
        assert example(item, boxes, b"\x89PNG" + bytes(n_boxes)) == reference_example(item, boxes, b"\x89PNG" + bytes(n_boxes))


def test_tfrecord_takes_real_sizes_from_the_image_bytes_and_cleans_as_yolo_does(quirky, tmp_path):
    # the TFRecord writer reads each image's size from the bytes it embeds, not from the XML's <size>
    edit(quirky, 6, r"<width>\d+</width>", "<width>4000</width>")
    yolo = convert.run("voc-yolo", tmp_path / "y", quirky / "annotations", quirky / "images", val_fraction=0.25)
    tf = convert.run("voc-tfrecord", tmp_path / "tf", quirky / "annotations", quirky / "images", val_fraction=0.25, shards=2)
    same = ("boxes", "clipped", "background_images", "corners_ordered", "zero_size_dropped", "images", "dropped")
    assert {k: tf.get(k) for k in same} == {k: yolo.get(k) for k in same}
    assert tf["clipped"] == 1 and tf["background_images"] == 1
    from PIL import Image

    for f in (tmp_path / "tf").glob("*.record"):
        for r in records(f):
            ex = parse_example(r)
            with Image.open(io.BytesIO(ex["image/encoded"][0])) as im:
                assert (ex["image/width"][0], ex["image/height"][0]) == im.size
            assert all(0.0 <= v <= 1.0 for key in ("xmin", "xmax", "ymin", "ymax") for v in ex[f"image/object/bbox/{key}"])


def test_unreadable_image_in_tfrecord_conversion_names_the_file(underground, tmp_path):
    import shutil

    root = tmp_path / "src"
    shutil.copytree(underground, root)
    bad = next((root / "images").glob("underground_007.*"))
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match=rf"{bad.name}: cannot read the image"):
        convert.run("voc-tfrecord", tmp_path / "tf", root / "annotations", root / "images")
    assert not (tmp_path / "tf").exists()


def test_label_map_pbtxt_parses_back_to_every_class_name_whatever_its_characters():
    """The gate refuses such names; a converter run on its own still writes a label map that parses."""
    from google.protobuf import text_format

    from cvpipe.convert.tfrecord import label_map
    from cvpipe.data.classmap import ClassMap

    names = ['a "quoted" name', "o'clock", "back\\slash", "new\nline", "tab\there", "bell\x07", "ünïcode"]
    tokens = text_format.Tokenizer(label_map(ClassMap.from_names(names)).splitlines())
    parsed = []
    while not tokens.AtEnd():
        if tokens.token == "name":
            tokens.NextToken()
            tokens.Consume(":")
            parsed.append(tokens.ConsumeString())
        else:
            tokens.NextToken()
    assert parsed == names
