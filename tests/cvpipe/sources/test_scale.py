"""Sets at a share of the real size (``--scale``): counts in proportion, real image sizes, samples unchanged."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from cvpipe.core.errors import CvpipeError
from cvpipe.sources.samples import generate
from cvpipe.sources.samples.scale import parse_scale, scaled, spread
from stages import samples as samples_stage
from tests.cvpipe.sources.test_samples import tree_digest


def test_scale_values_and_counts():
    assert parse_scale("sample") == "sample" and parse_scale("real") == 1.0 and parse_scale("0.1") == 0.1
    for bad in ("0", "1.5", "big", "-0.1"):
        with pytest.raises(CvpipeError, match="sample, real or a factor"):
            parse_scale(bad)
    assert scaled(67_500, 0.01) == 675 and scaled(65, 0.001) == 1
    assert spread(675, 131) == [6] * 20 + [5] * 111 and sum(spread(90_000, 131)) == 90_000


def test_fruits360_at_a_hundredth_of_the_real_size(tmp_path):
    root = generate("fruits360", tmp_path / "f", seed=0, scale="0.01", workers=1)
    train, test = sorted((root / "Training").rglob("*.jpg")), sorted((root / "Test").rglob("*.jpg"))
    assert (len(train), len(test)) == (675, 225)  # 67,500 and 22,500 at real size
    assert len(list((root / "Training").iterdir())) == len(list((root / "Test").iterdir())) == 131
    assert {Image.open(f).size for f in train[::50]} == {(100, 100)}
    # each image has its own random stream: the bytes do not depend on the number of workers
    assert tree_digest(generate("fruits360", tmp_path / "g", seed=0, scale=0.01, workers=2)) == tree_digest(root)


def test_coco_and_dsb_at_a_hundredth_of_the_real_size(tmp_path):
    coco = generate("coco", tmp_path / "coco", seed=0, scale=0.01, workers=1)
    train = json.loads((coco / "annotations" / "instances_train2017.json").read_text())
    val = json.loads((coco / "annotations" / "instances_val2017.json").read_text())
    assert (len(train["images"]), len(val["images"]), len(train["categories"])) == (40, 10, 80)
    assert 4 * 40 <= len(train["annotations"]) <= 10 * 40  # 36,000 boxes in 5,000 images at real size: 7.2 each
    assert {(i["width"], i["height"]) for i in train["images"]} == {(640, 480)}
    assert Image.open(coco / "train2017" / train["images"][0]["file_name"]).size == (640, 480)
    dsb = generate("dsb2018", tmp_path / "dsb", seed=0, scale=0.01, workers=1)
    assert len(list((dsb / "stage1_train").iterdir())) == 7 and len(list((dsb / "stage1_test").iterdir())) == 1
    masks = len(list(dsb.glob("stage1_train/*/masks/*.png")))
    assert 20 * 7 <= masks <= 65 * 7  # about 43 per image at real size (29,000 in 670)
    assert len((dsb / "stage1_train_labels.csv").read_text().splitlines()) == 1 + masks


def test_sample_scale_is_the_embedded_sample_and_other_sources_have_no_scaled_set(tmp_path):
    assert tree_digest(generate("fruits360", tmp_path / "a", scale="sample")) == tree_digest(generate("fruits360", tmp_path / "b"))
    with pytest.raises(CvpipeError, match="sets at the real size exist for fruits360, coco, dsb2018"):
        generate("voc", tmp_path / "voc", scale="real")
    assert samples_stage.main(["--out", "data/raw", "--dataset", "fruits360", "--scale", "real"]) != 0  # never into data/raw
