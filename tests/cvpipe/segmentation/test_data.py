"""Nuclei input: RGB whatever the stored mode, one label per mask, contact pixels, stable splits."""

import numpy as np
import pytest
from PIL import Image

from cvpipe.core.errors import DataError
from cvpipe.segmentation.data import contact, load_set, read_instances, read_rgb, targets


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "L", "I;16", "F"])
def test_every_stored_mode_reads_as_rgb(tmp_path, mode):
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    if mode == "I;16":
        image = Image.fromarray(grey.astype(np.uint16) * 256)
    elif mode == "F":  # 32-bit float grey (TIFF): stretched, not clipped at 255
        image = Image.fromarray(grey.astype(np.float32) * 1000.0)
    else:
        image = Image.fromarray(np.stack([grey] * 3, -1), "RGB").convert(mode)
    file = tmp_path / ("x.tif" if mode == "F" else "x.png")
    image.save(file)
    rgb = read_rgb(file)
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 2]).all() and np.corrcoef(rgb[..., 0].ravel(), grey.ravel())[0, 1] > 0.99
    assert rgb.max() - rgb.min() >= 200  # the whole range, not clipped white


def test_an_unreadable_image_is_named(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"x\.png"):
        read_rgb(tmp_path / "x.png")


def test_masks_become_one_label_each_and_a_wrong_size_is_named(tmp_path):
    for k, box in enumerate([(0, 0, 2, 2), (3, 1, 5, 4)]):
        mask = np.zeros((5, 6), dtype=np.uint8)
        mask[box[1] : box[3], box[0] : box[2]] = 255
        Image.fromarray(mask).save(tmp_path / f"{k}.png")
    labels = read_instances([tmp_path / "0.png", tmp_path / "1.png"], (5, 6))
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2] and labels[0, 0] == 1 and labels[2, 4] == 2
    with pytest.raises(DataError, match=r"1\.png: mask is 6x5, its image 7x5"):
        read_instances([tmp_path / "1.png"], (5, 7))


def test_contact_marks_only_where_two_nuclei_meet():
    labels = np.zeros((8, 12), dtype=np.int32)
    labels[2:6, 1:6], labels[2:6, 6:11] = 1, 2  # touching at columns 5 | 6
    labels[0, 0] = 0
    touching = contact(labels, width=1)
    assert touching[3, 5] and touching[3, 6] and not touching[3, 2] and not touching[3, 9]
    assert targets(labels, border=True).shape == (2, 8, 12)
    assert (targets(labels, border=False)[0] == (labels > 0)).all()


def test_splits_are_stable_and_the_holdout_is_never_trained_on(tmp_path):
    from cvpipe.gate import GateConfig
    from cvpipe.sources.samples import generate
    from stages import ingest, validate

    raw = generate("dsb2018", tmp_path / "raw")
    ingest.run("dsb2018", raw, tmp_path / "manifest")
    validate.run(tmp_path / "manifest", GateConfig(task="segmentation", source="dsb2018", modes=("RGBA",)), tmp_path / "report",
                 tmp_path / "validated", workers=2)
    first = load_set(tmp_path / "validated", 0.15, 0.2)
    more_val = load_set(tmp_path / "validated", 0.3, 0.2)
    held = set(first.indices("holdout"))
    assert held == set(more_val.indices("holdout"))  # the held-out images do not depend on val_fraction
    assert 20 <= len(held) <= 44 and len(first.indices("test")) == 8  # 20% of 160
    assert set(first.indices("val")) <= set(more_val.indices("val"))
    assert not held & set(first.indices("train")) and first.digest() != more_val.digest()
    k = first.indices("train")[0]
    assert len(first.masks[first.paths[k]]) >= 1
