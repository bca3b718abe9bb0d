"""Fruits-360 and Simpsons readers: folder-per-class layouts."""

import pytest

from cvpipe.core.errors import DataError
from cvpipe.data.manifest import probe_image
from cvpipe.sources import fruits360, simpsons
from tests.conftest import write_image


def test_fruits_classes_with_spaces_empty_class_and_splits(tmp_path):
    write_image(tmp_path / "Training" / "Apple Braeburn" / "r_1_100.jpg")
    write_image(tmp_path / "Training" / "Apple Braeburn" / "2_100.JPG")
    write_image(tmp_path / "Test" / "Pomme Été" / "r_5_100.jpg")
    (tmp_path / "Training" / "Kiwi").mkdir()
    (tmp_path / "Training" / "Apple Braeburn" / "notes.txt").write_text("not an image")
    found = fruits360.read(tmp_path)
    assert found.classes.names == ["Apple Braeburn", "Kiwi", "Pomme Été"]
    assert [(i.path, i.split, i.label) for i in found.images] == [
        ("Training/Apple Braeburn/2_100.JPG", "train", "Apple Braeburn"),
        ("Training/Apple Braeburn/r_1_100.jpg", "train", "Apple Braeburn"),
        ("Test/Pomme Été/r_5_100.jpg", "test", "Pomme Été"),
    ]


def test_fruits_without_split_folders(tmp_path):
    (tmp_path / "Apple").mkdir()
    with pytest.raises(DataError, match="no split folders"):
        fruits360.read(tmp_path)


def test_unreadable_root_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="Fruits-360 root not found"):
        fruits360.read(tmp_path / "nope")


def test_fruits_layout_figures(realdata):
    found = fruits360.read(realdata / "fruits360_shapes_layout_only")
    assert found.classes.names == ["Apple Braeburn", "Banana", "Cherry", "Kiwi", "Strawberry"]
    assert {i.split for i in found.images} == {"train", "val"}
    assert all(probe_image(i)["mode"] == "L" for i in found.images[:5])


def make_simpsons(root, annotation_lines):
    write_image(root / "simpsons_dataset" / "homer_simpson" / "pic_0000.jpg", (60, 40))
    write_image(root / "simpsons_dataset" / "bart_simpson" / "pic_0000.jpg", (50, 70))
    (root / "simpsons_dataset" / "ned_flanders").mkdir()
    write_image(root / "kaggle_simpson_testset" / "homer_simpson_12.jpg")
    (root / "annotation.txt").write_text("\n".join(annotation_lines) + "\n")
    return root


def test_simpsons_labels_test_names_and_boxes_as_written(tmp_path):
    root = make_simpsons(tmp_path, [
        "./characters/homer_simpson/pic_0000.jpg,40,5,10,30,homer_simpson",  # x1 > x2, as in the real file
        "./characters/bart_simpson/pic_0000.jpg,3,3,3,3,bart_simpson",  # zero size
    ])
    found = simpsons.read(root)
    assert found.classes.names == ["bart_simpson", "homer_simpson", "ned_flanders"]
    assert [(i.split, i.label) for i in found.images] == [("train", "bart_simpson"), ("train", "homer_simpson"), ("test", "homer_simpson")]
    homer, bart = found.boxes
    assert homer["path"] == "simpsons_dataset/homer_simpson/pic_0000.jpg"
    assert (homer["x_min"], homer["x_max"], homer["annotation"]) == (40, 10, "annotation.txt:1")
    assert bart["x_min"] == bart["x_max"]


def test_simpsons_nested_kaggle_folders(tmp_path):
    write_image(tmp_path / "simpsons_dataset" / "simpsons_dataset" / "lisa_simpson" / "pic_0001.jpg")
    write_image(tmp_path / "kaggle_simpson_testset" / "kaggle_simpson_testset" / "lisa_simpson_3.jpg")
    found = simpsons.read(tmp_path)
    assert found.classes.names == ["lisa_simpson"]
    assert [i.label for i in found.images] == ["lisa_simpson", "lisa_simpson"]


def test_simpsons_malformed_row_names_line(tmp_path):
    root = make_simpsons(tmp_path, ["./characters/homer_simpson/pic_0000.jpg,1,2,3,homer_simpson"])
    with pytest.raises(DataError, match=r"annotation.txt:1: expected 6 comma-separated fields, got 5"):
        simpsons.read(root)


def test_simpsons_record_mode_keeps_bad_rows_with_their_error(tmp_path):
    root = make_simpsons(tmp_path, [
        "./characters/homer_simpson/pic_0000.jpg,1,2,3,homer_simpson",
        "./characters/bart_simpson/pic_0000.jpg,1,2,x,4,bart_simpson",
        "./characters/bart_simpson/pic_0000.jpg,1,2,3,4,bart_simpson",
    ])
    bad1, bad2, good = simpsons.read(root, strict=False).boxes
    assert bad1["error"] == "expected 6 comma-separated fields, got 5" and bad1["annotation"] == "annotation.txt:1"
    assert bad2["error"].startswith("non-numeric box corners") and bad2["path"] == "simpsons_dataset/bart_simpson/pic_0000.jpg"
    assert good["error"] is None
