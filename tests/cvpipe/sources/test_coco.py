import json
import re

import pytest

from cvpipe.core.errors import DataError
from cvpipe.data.manifest import probe_image
from cvpipe.sources import coco
from tests.conftest import write_image


def make_coco(root, images, annotations, categories=None, split="val2017"):
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for entry in images:
        write_image(root / split / entry["file_name"], (entry["width"], entry["height"]))
    doc = {
        "images": images,
        "annotations": annotations,
        "categories": categories or [{"id": 1, "name": "person"}, {"id": 90, "name": "toothbrush"}],
    }
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    return root


def test_boxes_classes_crowd_and_images_without_objects(tmp_path):
    root = make_coco(
        tmp_path,
        images=[{"id": 7, "file_name": "a.jpg", "width": 40, "height": 30}, {"id": 8, "file_name": "b.jpg", "width": 40, "height": 30}],
        annotations=[
            {"id": 1, "image_id": 7, "category_id": 90, "bbox": [1, 2, 10, 5], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 4, 4], "iscrowd": 1,
             "segmentation": {"counts": [0, 4, 1196], "size": [30, 40]}},
        ],
        categories=[{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 5, "name": "airplane"}],
    )
    found = coco.read(root)
    assert found.classes.names == ["person", "airplane", "toothbrush"]  # by COCO id, unused kept
    assert [c.source_id for c in found.classes.classes] == [1, 5, 90]
    assert [(i.path, i.split, i.source_id) for i in found.images] == [("val2017/a.jpg", "val", "7"), ("val2017/b.jpg", "val", "8")]
    box, crowd = found.boxes
    assert (box["class_index"], box["class_name"]) == (2, "toothbrush")
    assert (box["x_min"], box["y_min"], box["x_max"], box["y_max"]) == (1, 2, 11, 7)
    assert crowd["iscrowd"] and not box["iscrowd"]
    assert {b["path"] for b in found.boxes} == {"val2017/a.jpg"}  # b.jpg stays, with no boxes


def test_annotation_on_unknown_image_or_category_is_recorded_not_dropped(tmp_path):
    root = make_coco(
        tmp_path,
        images=[{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}],
        annotations=[{"id": 5, "image_id": 999, "category_id": 42, "bbox": [0, 0, 1, 1]}],
    )
    (box,) = coco.read(root).boxes
    assert box["path"] is None and box["source_image"] == "999"
    assert box["class_index"] is None and box["source_class"] == "42"


def test_declared_size_is_kept_beside_the_real_one(tmp_path):
    root = make_coco(tmp_path, images=[{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}], annotations=[])
    write_image(root / "val2017" / "a.jpg", (20, 10))
    row = probe_image(coco.read(root).images[0])
    assert (row["width"], row["height"], row["declared_width"], row["declared_height"]) == (20, 10, 8, 8)


def test_malformed_json_names_file_and_line(tmp_path):
    (tmp_path / "annotations").mkdir()
    bad = tmp_path / "annotations" / "instances_train2017.json"
    bad.write_text('{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(DataError) as err:
        coco.read(tmp_path)
    assert str(err.value).startswith(f"{bad}:2: malformed JSON")


def test_missing_root_or_annotations_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="nope: COCO root not found"):
        coco.read(tmp_path / "nope")
    with pytest.raises(DataError, match="annotations: COCO annotations folder not found"):
        coco.read(tmp_path)


def test_conflicting_categories_between_splits(tmp_path):
    make_coco(tmp_path, [], [], [{"id": 1, "name": "person"}], split="train2017")
    make_coco(tmp_path, [], [], [{"id": 1, "name": "people"}], split="val2017")
    with pytest.raises(DataError, match="category 1 is 'people' here but 'person' before"):
        coco.read(tmp_path)


def test_coco128_figures(realdata):
    found = coco.read(realdata / "coco128")
    assert len(found.images) == 128
    assert sum(not b["iscrowd"] for b in found.boxes) == 929
    assert sum(b["iscrowd"] for b in found.boxes) == 10
    assert len(found.classes) == 80
    assert found.classes.classes[0].source_id == 1 and found.classes.classes[-1].source_id == 90
    assert found.classes.names[found.classes.index_of_source_id(90)] == "toothbrush"
    with_boxes = {b["path"] for b in found.boxes}
    empty = sorted(i.path for i in found.images if i.path not in with_boxes)
    assert empty == ["train2017/000000000250.jpg", "train2017/000000000508.jpg"]


def test_record_mode_keeps_a_malformed_annotation_with_its_error(tmp_path):
    root = make_coco(
        tmp_path,
        images=[{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}],
        annotations=[{"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1]}],
    )
    with pytest.raises(DataError, match=r"annotation 5: bbox is \[0, 0, 1\], expected \[x, y, width, height\]"):
        coco.read(root)
    (box,) = coco.read(root, strict=False).boxes
    assert box["path"] == "val2017/a.jpg" and box["source_id"] == "5" and box["error"].startswith("annotation 5: bbox is")


@pytest.mark.parametrize(("entry", "message"), [
    ({"iscrowd": "0"}, 'annotation 5: iscrowd is "0", expected 0 or 1'),
    ({"iscrowd": True}, "annotation 5: iscrowd is true, expected 0 or 1"),
    ({"category_id": "1"}, 'annotation 5: category_id is "1", expected an integer'),
    ({"image_id": 1.0}, "annotation 5: image_id is 1.0, expected an integer"),
    ({"bbox": ["0", 0, 1, 1]}, 'annotation 5: bbox is ["0", 0, 1, 1], expected'),
    ({"id": "5"}, 'annotation "5": id is "5", expected an integer'),
])
def test_a_field_of_the_wrong_json_type_is_named_never_coerced(tmp_path, entry, message):
    ann = {"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], **entry}
    root = make_coco(tmp_path, images=[{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}], annotations=[ann])
    with pytest.raises(DataError, match=re.escape(message)):
        coco.read(root)
    (box,) = coco.read(root, strict=False).boxes
    assert box["error"].startswith(message) and box["class_index"] is None


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_not_numbers(tmp_path, literal):
    root = make_coco(tmp_path, images=[{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}],
                     annotations=[{"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}])
    path = root / "annotations" / "instances_val2017.json"
    path.write_text(path.read_text().replace('"bbox": [0, 0, 1, 1]', f'"bbox": [0, 0, {literal}, 1]'))
    with pytest.raises(DataError, match=re.escape(f"bbox is [0, 0, {literal}, 1], expected")):
        coco.read(root)


def test_a_string_image_width_is_recorded_on_the_image_not_taken_as_a_number(tmp_path):
    root = make_coco(tmp_path, images=[{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}], annotations=[])
    path = root / "annotations" / "instances_val2017.json"
    path.write_text(path.read_text().replace('"width": 8', '"width": "8"'))
    with pytest.raises(DataError, match=re.escape('images[0] (id 1): width is "8", expected a positive integer')):
        coco.read(root)
    (image,) = coco.read(root, strict=False).images
    assert image.declared_width is None and 'width is "8"' in image.annotation_error
