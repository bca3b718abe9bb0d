"""Detection data: the converted folder's checks, the training mirror, the image formats ultralytics reads."""

from __future__ import annotations

import shutil

import pytest
import yaml
from PIL import Image

from cvpipe.core.errors import DataError
from cvpipe.data.files import IMAGE_SUFFIXES
from cvpipe.detection.data import NOT_FOR_ULTRALYTICS, YoloSet, read_labels, training_mirror


def test_the_mirror_splits_train_for_validation_and_leaves_the_converted_folder_alone(yolo, tmp_path):
    before = sorted(p.relative_to(yolo) for p in yolo.rglob("*"))
    data = YoloSet.read(yolo)
    counts = training_mirror(data, tmp_path / "mirror", 0.2)
    assert counts["train"] + counts["val"] == len(data.images["train"]) and 0 < counts["val"] < counts["train"]
    doc = yaml.safe_load((tmp_path / "mirror" / "data.yaml").read_text())
    assert doc["names"] == dict(enumerate(data.classes.names)) and doc["path"] == str((tmp_path / "mirror").resolve())
    held_out = {p.name for p in data.images["val"]}
    mirrored = {p.name for p in (tmp_path / "mirror" / "images").rglob("*.*")}
    assert not held_out & mirrored  # the converter's val split is never trained or validated on
    assert sorted(p.relative_to(yolo) for p in yolo.rglob("*")) == before
    assert data.held_out("test") == "val"


def test_a_class_map_that_disagrees_with_data_yaml_is_a_clear_error(yolo, tmp_path):
    copy = tmp_path / "yolo"
    shutil.copytree(yolo, copy, symlinks=True)
    doc = yaml.safe_load((copy / "data.yaml").read_text())
    doc["names"][0] = "renamed"
    (copy / "data.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(DataError, match=r"data\.yaml: names .* disagree with classes\.json"):
        YoloSet.read(copy)


def test_a_dataset_without_a_single_box_is_a_clear_error(yolo, tmp_path):
    copy = tmp_path / "yolo"
    shutil.copytree(yolo, copy, symlinks=True)
    for label in (copy / "labels" / "train").glob("*.txt"):
        label.write_text("")
    with pytest.raises(DataError, match=r"labels/train: not a single box in the training split"):
        training_mirror(YoloSet.read(copy), tmp_path / "mirror", 0.2)


def test_a_gif_in_the_converted_folder_is_refused_by_name(yolo, tmp_path):
    copy = tmp_path / "yolo"
    shutil.copytree(yolo, copy, symlinks=True)
    Image.new("RGB", (8, 8)).save(copy / "images" / "val" / "zz_animated.GIF")
    Image.new("RGB", (8, 8)).save(copy / "images" / "val" / "zz_other.gif")
    with pytest.raises(DataError, match=r"images/val/zz_animated\.GIF: a GIF \(and 1 more\), which ultralytics does not"):
        YoloSet.read(copy)


def test_every_other_image_suffix_is_one_ultralytics_reads_as_an_image():
    from ultralytics.data.utils import IMG_FORMATS, VID_FORMATS

    assert {s.lstrip(".") for s in IMAGE_SUFFIXES - NOT_FOR_ULTRALYTICS} <= IMG_FORMATS
    assert all(s.lstrip(".") in VID_FORMATS and s.lstrip(".") not in IMG_FORMATS for s in NOT_FOR_ULTRALYTICS)


def test_read_labels_gives_pixel_corners(tmp_path):
    (tmp_path / "a.txt").write_text("1 0.5 0.25 0.5 0.5\n")
    assert read_labels(tmp_path / "a.txt", 200, 100) == [(1, 50.0, 0.0, 150.0, 50.0)]
