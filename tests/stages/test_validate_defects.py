"""The data gate on the defects that once slipped through silently: non-finite coordinates, reused
ids, wrong JSON types, paths that leave the dataset, look-alike or unwritable class names, empty
splits and colliding file stems. Each names its file and its check; none reaches a converter.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cvpipe.core.errors import DataError
from cvpipe.sources.samples import generate
from stages import ingest
from tests.conftest import REPO, write_image
from tests.stages.test_validate import failures_naming, gate, named


def distinct_images(folder: Path, n: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        Image.new("RGB", (40, 40), (seed * 37 % 256, k * 41 % 256, (seed + k) * 13 % 256)).save(folder / f"{k}.jpg")


def outside_image(tmp: Path, name: str = "outside.jpg") -> Path:
    """A good image that is not part of any dataset (what a symbolic link may point to)."""
    target = tmp / "elsewhere" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    write_image(target, (64, 64))
    return target


def link_outside(file: Path, tmp: Path) -> None:
    file.unlink()
    os.symlink(outside_image(tmp, file.name), file)


def only(results, file: str) -> dict[str, bool]:
    return failures_naming(results, file)


def examples(results, check: str) -> str:
    return " | ".join(e for r in results if r.check == check and not r.passed for e in r.examples)


# ------------------------------------------------------------------------------------ Fruits-360


@pytest.fixture(scope="module")
def fruits(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fruits")
    root = generate("fruits360", tmp / "raw")
    train = root / "Training"
    distinct_images(train / "kiwi", 6, 1)  # beside Kiwi
    distinct_images(train / "Banana ", 6, 2)  # beside Banana
    distinct_images(train / 'Blood "orange"', 6, 3)
    distinct_images(train / "Lime\nGreen", 6, 4)
    link_outside(next((train / "Orange").iterdir()), tmp)
    distinct_images(tmp / "mango_elsewhere", 6, 5)
    os.symlink(tmp / "mango_elsewhere", train / "Mango")
    (root / "Validation").mkdir()  # a split folder without a single image
    return gate(tmp, "fruits360", "fruits360", root), root


def test_fruits_class_names_that_differ_only_by_case_are_one_class_twice(fruits):
    (_, results), _ = fruits
    assert only(results, "class:kiwi") == {"classes.distinct_names": True}
    assert only(results, "class:Kiwi") == {"classes.distinct_names": True}


def test_fruits_class_name_with_a_trailing_space(fruits):
    (_, results), _ = fruits
    assert only(results, "class:Banana ") == {"classes.distinct_names": True, "classes.name": True}
    assert "leading or trailing white space" in examples(results, "classes.name")


@pytest.mark.parametrize("name", ['Blood "orange"', "Lime\nGreen"])
def test_fruits_class_name_that_would_break_label_map_pbtxt(fruits, name):
    (_, results), _ = fruits
    assert only(results, f"class:{name}") == {"classes.name": True}
    assert "label_map.pbtxt" in examples(results, "classes.name")


def test_fruits_image_that_is_a_symbolic_link_out_of_the_dataset(fruits):
    (_, results), root = fruits
    (link,) = [p for p in (root / "Training" / "Orange").iterdir() if p.is_symlink()]
    assert only(results, f"Training/Orange/{link.name}") == {"images.exists": True}
    assert "symbolic link to" in examples(results, "images.exists")


def test_fruits_class_folder_that_is_a_symbolic_link_out_of_the_dataset(fruits):
    (_, results), _ = fruits
    assert only(results, "Training/Mango/0.jpg") == {"images.exists": True}
    assert "outside the dataset root" in examples(results, "images.exists")


def test_fruits_empty_split_folder(fruits):
    (result, results), _ = fruits
    (split,) = [r for r in results if r.check == "splits.non_empty"]
    assert not split.passed and split.examples == ["split 'val' (Validation): no images"]
    assert not result.passed


# ------------------------------------------------------------------------------------ Simpsons


@pytest.fixture(scope="module")
def simpsons(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("simpsons")
    root = generate("simpsons", tmp / "raw")
    with open(root / "annotation.txt", "a") as f:
        f.write("./characters/bart_simpson/pic_0001.jpg,nan,30,102,103,bart_simpson\n")  # line 81
        f.write("./characters/bart_simpson/pic_0002.jpg,0,30,1e999,114,bart_simpson\n")  # line 82
    link_outside(root / "simpsons_dataset" / "lisa_simpson" / "pic_0003.jpg", tmp)
    return gate(tmp, "simpsons", "simpsons", root)


@pytest.mark.parametrize(("line", "shown"), [(81, "box (nan, 30, 102, 103)"), (82, "box (0, 30, inf, 114)")])
def test_simpsons_non_finite_coordinate(simpsons, line, shown):
    _, results = simpsons
    assert only(results, f"annotation.txt:{line}") == {"boxes.finite": True}
    assert f"{shown} has a coordinate that is not a finite number" in examples(results, "boxes.finite")


def test_simpsons_image_that_is_a_symbolic_link_out_of_the_dataset(simpsons):
    _, results = simpsons
    assert only(results, "simpsons_dataset/lisa_simpson/pic_0003.jpg") == {"images.exists": True}


# ------------------------------------------------------------------------------------ LabelImg VOC


def edit_xml(root: Path, number: int, edit) -> str:
    path = root / "annotations" / f"underground_{number:03d}.xml"
    path.write_text(edit(path.read_text()))
    return f"annotations/underground_{number:03d}.xml"


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("voc")
    root = generate("voc", tmp / "raw")
    edit_xml(root, 11, lambda t: re.sub(r"<xmin>\d+</xmin>", "<xmin>nan</xmin>", t, count=1))
    edit_xml(root, 12, lambda t: re.sub(r"<xmax>\d+</xmax>", "<xmax>1e999</xmax>", t, count=1))
    # underground_013.png beside underground_013.jpg, each with its own annotation
    Image.open(root / "images" / "underground_013.jpg").save(root / "images" / "underground_013.png")
    xml = (root / "annotations" / "underground_013.xml").read_text()
    (root / "annotations" / "underground_013_png.xml").write_text(
        re.sub(r"<filename>[^<]+</filename>", "<filename>underground_013.png</filename>", xml, count=1))
    link_outside(root / "images" / "underground_014.jpg", tmp)
    edit_xml(root, 15, lambda t: re.sub(r"<filename>[^<]+</filename>", "<filename>/etc/hostname</filename>", t, count=1))
    return gate(tmp, "underground", "voc", root)


@pytest.mark.parametrize("number", [11, 12])
def test_voc_non_finite_coordinate(voc, number):
    _, results = voc
    assert only(results, f"annotations/underground_{number:03d}.xml") == {"boxes.finite": True}


def test_voc_two_annotated_images_with_the_same_stem(voc):
    _, results = voc
    for image in ("images/underground_013.jpg", "images/underground_013.png"):
        assert only(results, image) == {"images.unique_stem": True}
    assert "their label files would collide" in examples(results, "images.unique_stem")


def test_voc_image_that_is_a_symbolic_link_out_of_the_dataset(voc):
    _, results = voc
    assert only(results, "images/underground_014.jpg") == {"images.exists": True}


def test_voc_absolute_filename(voc):
    _, results = voc
    assert only(results, "/etc/hostname") == {"images.exists": True}
    assert "'/etc/hostname' escapes the images folder" in examples(results, "images.exists")


# ------------------------------------------------------------------------------------ COCO

ANN = "annotations/instances_train2017.json"


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coco")
    root = generate("coco", tmp / "raw")
    path = root / ANN
    doc = json.loads(path.read_text())
    images, anns = doc["images"], doc["annotations"]
    anns[0]["bbox"][2] = "NAN_LITERAL"
    anns[1]["bbox"][3] = "INF_LITERAL"
    anns[2]["iscrowd"] = "0"
    anns[3]["category_id"] = str(anns[3]["category_id"])
    anns[5]["id"] = anns[4]["id"]  # two boxes, one annotation id
    images[1]["id"] = images[0]["id"]  # two images, one image id
    images[2]["width"] = str(images[2]["width"])
    images[3]["file_name"] = "../../outside.jpg"
    images[4]["file_name"] = "/etc/hostname"
    link_outside(root / "train2017" / images[5]["file_name"], tmp)
    png = Path(images[6]["file_name"]).with_suffix(".png").name
    Image.open(root / "train2017" / images[6]["file_name"]).save(root / "train2017" / png)
    images.append({**images[6], "id": 990001, "file_name": png})
    doc["categories"] += [{"id": 71, "name": doc["categories"][0]["name"].title()},
                          {"id": 72, "name": "traffic\nlight"}, {"id": 73, "name": 'the "best" shape'}]
    text = json.dumps(doc).replace('"NAN_LITERAL"', "NaN").replace('"INF_LITERAL"', "Infinity")
    path.write_text(text)
    empty = {"images": [], "annotations": [], "categories": doc["categories"]}
    (root / "annotations" / "instances_test2017.json").write_text(json.dumps(empty))
    return gate(tmp, "coco", "coco", root), doc, root


@pytest.mark.parametrize(("index", "message"), [
    (0, "bbox is [{x}, {y}, NaN, {h}], expected [x, y, width, height] as four finite numbers"),
    (1, "bbox is [{x}, {y}, {w}, Infinity], expected"),
    (2, 'iscrowd is "0", expected 0 or 1'),
    (3, 'category_id is "{c}", expected an integer'),
])
def test_coco_wrong_json_type_or_literal_is_named_not_coerced(coco, index, message):
    (_, results), doc, _ = coco
    ann = doc["annotations"][index]
    x, y, w, h = ann["bbox"]
    expected = f"annotation {ann['id']}: " + message.format(x=json.dumps(x), y=json.dumps(y), w=json.dumps(w),
                                                             h=json.dumps(h), c=ann["category_id"])
    parse = next(r for r in results if r.check == "boxes.parse")
    assert named(parse) == {ANN}
    assert any(e.startswith(ANN) and expected in e for e in parse.examples), (expected, parse.examples)


def test_coco_two_annotations_with_one_id(coco):
    (_, results), doc, _ = coco
    (r,) = [r for r in results if r.check == "boxes.unique_id"]
    assert not r.passed and r.unexpected_count == 2 and named(r) == {ANN}
    assert f"annotation id {doc['annotations'][4]['id']} is used by another box too" in r.examples[0]


def test_coco_two_images_with_one_id(coco):
    (_, results), doc, _ = coco
    first, second = (f"train2017/{doc['images'][i]['file_name']}" for i in (0, 1))
    assert only(results, first) == only(results, second) == {"images.unique_id": True}


def test_coco_string_image_width(coco):
    (_, results), doc, _ = coco
    image = doc["images"][2]
    assert only(results, f"train2017/{image['file_name']}") == {"images.annotation": True}
    assert f'image id {image["id"]}: width is "{image["width"]}", expected a positive integer' in examples(results, "images.annotation")


@pytest.mark.parametrize("index", [3, 4])
def test_coco_file_name_outside_the_dataset(coco, index):
    (_, results), doc, root = coco
    image = doc["images"][index]
    path = os.path.relpath(root / "train2017" / image["file_name"], root) if index == 4 else "train2017/../../outside.jpg"
    assert only(results, path) == {"images.exists": True}
    assert f"{path!r} lies outside the dataset root" in examples(results, "images.exists")


def test_coco_image_that_is_a_symbolic_link_out_of_the_dataset(coco):
    (_, results), doc, _ = coco
    assert only(results, f"train2017/{doc['images'][5]['file_name']}") == {"images.exists": True}


def test_coco_same_stem_two_formats(coco):
    (_, results), doc, _ = coco
    jpg = doc["images"][6]["file_name"]
    for name in (jpg, Path(jpg).with_suffix(".png").name):
        assert only(results, f"train2017/{name}") == {"images.unique_stem": True}


def test_coco_category_names_that_differ_only_by_case(coco):
    (_, results), doc, _ = coco
    for name in (doc["categories"][0]["name"], doc["categories"][0]["name"].title()):
        assert "classes.distinct_names" in only(results, f"class:{name}")


@pytest.mark.parametrize("name", ["traffic\nlight", 'the "best" shape'])
def test_coco_category_name_that_would_break_label_map_pbtxt(coco, name):
    (_, results), _, _ = coco
    assert "classes.name" in only(results, f"class:{name}")


def test_coco_annotation_file_without_images_is_an_empty_split(coco):
    (_, results), _, _ = coco
    assert "split 'test' (annotations/instances_test2017.json): no images" in examples(results, "splits.non_empty")


# ------------------------------------------------------------------------------------ DSB2018


@pytest.fixture(scope="module")
def dsb(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dsb")
    root = generate("dsb2018", tmp / "raw")
    first, second = sorted((root / "stage1_train").iterdir())[:2]
    mask = sorted((first / "masks").iterdir())[0]
    target = tmp / "elsewhere" / mask.name
    target.parent.mkdir()
    shutil.move(mask, target)
    os.symlink(target, mask)
    image = next((second / "images").iterdir())
    link_outside(image, tmp)
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    return gate(tmp, "dsb2018", "dsb2018", root), rel(mask), rel(image)


def test_dsb_mask_that_is_a_symbolic_link_out_of_the_dataset(dsb):
    (_, results), mask, _ = dsb
    assert only(results, mask) == {"masks.readable": True}


def test_dsb_image_that_is_a_symbolic_link_out_of_the_dataset(dsb):
    (_, results), _, image = dsb
    assert only(results, image) == {"images.exists": True}


# ------------------------------------------------------------------------------------ empty sets


def test_an_empty_dataset_fails_the_gate_and_writes_no_clean_tables(tmp_path):
    root = tmp_path / "raw"
    for split in ("Training", "Test"):
        (root / split / "Apple").mkdir(parents=True)
    result, results = gate(tmp_path, "fruits360", "fruits360", root)
    (r,) = [r for r in results if r.check == "splits.non_empty"]
    assert r.examples == ["split 'train' (Training): no images", "split 'test' (Test): no images"]
    assert not result.passed and result.images == 0
    assert not (tmp_path / "validated" / "fruits360").exists()


def test_an_empty_voc_folder_is_refused_at_ingest_naming_it(tmp_path):
    root = tmp_path / "raw"
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    with pytest.raises(DataError, match=r"annotations: no Pascal VOC \.xml annotation files"):
        ingest.run("voc", root, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_the_validate_command_exits_1_naming_the_empty_split(tmp_path):
    root = generate("fruits360", tmp_path / "raw")
    for f in (root / "Test").rglob("*.jpg"):
        f.unlink()
    ingest.run("fruits360", root, tmp_path / "m")
    proc = subprocess.run([sys.executable, "-m", "stages.validate", "--manifest-dir", str(tmp_path / "m"), "--task",
                           "classification", "--report", str(tmp_path / "r"), "--out", str(tmp_path / "v"),
                           "--dataset", "fruits360"], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "FAIL splits.non_empty" in proc.stderr and "split 'test' (Test): no images" in proc.stderr
    assert not (tmp_path / "v").exists()


# ------------------------------------------------------------------------------- converters never see it


def test_converters_refuse_a_non_finite_box_even_without_the_gate():
    from cvpipe.convert.dataset import Box, BoxCleaner, Item

    item = Item(Path("a.jpg"), "a.jpg", 10, 10, "train", "a", [Box(0, "x", 1.0, 1.0, float("nan"), 5.0, "a.xml")])
    with pytest.raises(DataError, match=r"a\.xml: box \(1, 1, nan, 5\) on 'a\.jpg' has a coordinate that is not a finite number"):
        BoxCleaner(["x"]).clean(item)


def test_converters_refuse_two_coco_images_with_one_id(tmp_path):
    from stages import convert

    (tmp_path / "images").mkdir()
    doc = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}], "annotations": [],
           "categories": [{"id": 1, "name": "x"}]}
    (tmp_path / "instances_val.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"image id 1 is given to both 'a\.jpg' and 'b\.jpg'"):
        convert.run("coco-tfrecord", tmp_path / "out", tmp_path / "instances_val.json", tmp_path / "images")


def test_converters_refuse_two_images_whose_label_files_would_collide():
    from cvpipe.convert.dataset import Item, output_names

    items = [Item(Path(f"d/{n}"), n, 1, 1, "train", n) for n in ("a/x.jpg", "a/x.png", "b/x.jpg")]
    with pytest.raises(DataError, match="same name but for its extension"):
        output_names(items)


def test_quarantine_sets_aside_both_images_of_a_reused_id_and_keeps_the_rest(tmp_path):
    root = generate("coco", tmp_path / "raw")
    path = root / ANN
    doc = json.loads(path.read_text())
    doc["images"][1]["id"] = doc["images"][0]["id"]
    path.write_text(json.dumps(doc))
    result, _ = gate(tmp_path, "coco", "coco", root, on_fail="quarantine")
    assert result.passed and result.quarantined_images == 2
    rows = [r.split(",") for r in (tmp_path / "validated" / "coco" / "quarantine.csv").read_text().splitlines()[1:]]
    assert {r[1] for r in rows if r[2] == "images.unique_id"} == {f"train2017/{doc['images'][i]['file_name']}" for i in (0, 1)}
    # the boxes of the id that no image has any more are set aside too
    assert {r[2] for r in rows if not r[1]} == {"boxes.image_known"}
