"""The data gate on a bad-input corpus: every defect is caught by exactly the expectation meant for it.

One corrupted copy of each embedded sample (five layouts) carries many defects, each in a file of
its own; a test per defect asserts which failed expectations name that file.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cvpipe.core.params import load_params
from cvpipe.gate import GateConfig
from cvpipe.sources.samples import generate
from cvpipe.sources.samples import voc as voc_sample
from stages import ingest, validate
from stages.validate import config_from_params
from tests.conftest import REPO, write_image

PARAMS = load_params(REPO / "params.yaml")


def gate(tmp: Path, name: str, source: str, root: Path, on_fail: str = "stop", cfg: GateConfig | None = None, cache=None):
    manifests = tmp / "manifests" / name
    ingest.run(source, root, manifests, on_bad_annotation="record")
    task = json.loads((manifests / "dataset.json").read_text())["task"]
    cfg = cfg or config_from_params(PARAMS, name, task, source)
    return validate.run(manifests, cfg, tmp / "report" / name, tmp / "validated" / name, on_fail=on_fail, cache=cache, workers=2)


def named(result) -> set[str]:
    """Every file (or class) a check's failing rows name: images, annotation files, masks."""
    out = set()
    for row in result.rows:
        if result.table == "boxes":
            out.add(row["annotation"])
        elif result.table == "masks":
            out.add(row["mask_path"])
        elif result.table == "classes":
            out.add(f"class:{row['class']}")
        elif result.table == "splits":
            out.add(f"split:{row['where']}")
        else:
            out.add(row["path"])
    return out


def failures_naming(results, file: str) -> dict[str, bool]:
    """check id -> blocking, for each failed check that names ``file``."""
    return {r.check: r.blocking for r in results if not r.passed and file in named(r)}


def jpeg_bytes(color=(200, 30, 30), size=(40, 40)) -> bytes:
    from io import BytesIO

    buf = BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ corpora


@pytest.fixture(scope="module")
def fruits(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fruits")
    root = generate("fruits360", tmp / "raw")
    train, test = root / "Training", root / "Test"
    good = jpeg_bytes()
    (train / "Banana" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (train / "Banana" / "empty.jpg").write_bytes(b"")
    (train / "Banana" / "notes.jpg").write_text("this is a text file, not a photo")
    Image.new("RGB", (100, 100), (250, 200, 0)).save(train / "Banana" / "really_png.jpg", format="PNG")
    Image.new("CMYK", (100, 100), (0, 50, 200, 0)).save(train / "Orange" / "cmyk.jpg", format="JPEG")
    write_image(train / "Orange" / "grey16.png", (100, 100), mode="I;16")
    write_image(train / "Orange" / "tiny.jpg", (1, 1))
    shutil.copyfile(train / "Kiwi" / "0_100.jpg", test / "Kiwi" / "leaked.jpg")
    shutil.copyfile(train / "Orange" / "0_100.jpg", train / "Orange" / "copy_of_0.jpg")
    (train / "Lemon").mkdir()
    return gate(tmp, "fruits360", "fruits360", root)


@pytest.fixture(scope="module")
def simpsons(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("simpsons")
    root = generate("simpsons", tmp / "raw")
    write_image(root / "kaggle_simpson_testset" / "ned_flanders_1.jpg", (64, 64))
    rows = (root / "annotation.txt").read_text().splitlines()
    rows[0] = re.sub(r",(\d+),(\d+),(\d+),(\d+),", lambda m: f",{m[3]},{m[2]},{m[1]},{m[4]},", rows[0])  # x1 > x2
    rows[1] = re.sub(r",(\d+),(\d+),(\d+),(\d+),", lambda m: f",{m[1]},{m[2]},{m[1]},{m[4]},", rows[1])  # zero width
    rows.append("./characters/bart_simpson/pic_9999.jpg,1,1,20,20,bart_simpson")  # no such image
    rows.append("./characters/bart_simpson/pic_0001.jpg,1,1,20,bart_simpson")  # a field short
    (root / "annotation.txt").write_text("\n".join(rows) + "\n")
    return gate(tmp, "simpsons", "simpsons", root)


def edit_xml(root: Path, number: int, edit) -> str:
    path = root / "annotations" / f"underground_{number:03d}.xml"
    path.write_text(edit(path.read_text()))
    return f"annotations/underground_{number:03d}.xml"


def first_object_edit(pattern: str, repl):
    return lambda text: re.sub(pattern, repl, text, count=1)


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("voc")
    root = generate("voc", tmp / "raw")
    (root / "classes.txt").write_text("roundel\nway out\nplatform sign\n")
    edit_xml(root, 1, first_object_edit(r"<name>[^<]+</name>", "<name>bus stop</name>"))
    edit_xml(root, 2, first_object_edit(r"<xmax>\d+</xmax>", lambda m: "<xmax>900</xmax>"))
    edit_xml(root, 3, first_object_edit(r"<xmin>(\d+)</xmin>(\s*)<ymin>(\d+)</ymin>(\s*)<xmax>(\d+)</xmax>",
                                        lambda m: f"<xmin>{m[5]}</xmin>{m[2]}<ymin>{m[3]}</ymin>{m[4]}<xmax>{m[1]}</xmax>"))
    edit_xml(root, 4, first_object_edit(r"<xmin>(\d+)</xmin>(\s*)<ymin>(\d+)</ymin>(\s*)<xmax>(\d+)</xmax>",
                                        lambda m: f"<xmin>{m[1]}</xmin>{m[2]}<ymin>{m[3]}</ymin>{m[4]}<xmax>{m[1]}</xmax>"))
    edit_xml(root, 5, first_object_edit(r"<width>\d+</width>", "<width>4000</width>"))
    edit_xml(root, 6, lambda t: re.sub(r"\s*<size>.*?</size>", "", t, flags=re.S))
    edit_xml(root, 8, lambda t: t.replace("</filename>", "</file>", 1))
    edit_xml(root, 9, first_object_edit(r"<filename>[^<]+</filename>", "<filename>missing_photo.jpg</filename>"))
    edit_xml(root, 10, first_object_edit(r"<filename>[^<]+</filename>", "<filename>../../outside.jpg</filename>"))
    return gate(tmp, "underground", "voc", root)


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coco")
    root = generate("coco", tmp / "raw")
    path = root / "annotations" / "instances_val2017.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0]["image_id"] = 999999
    doc["annotations"][1]["category_id"] = 42
    x, y, w, h = doc["annotations"][2]["bbox"]
    doc["annotations"][2]["bbox"] = [x, y, -w, h]
    doc["images"][0]["width"] += 10
    (root / "val2017" / doc["images"][1]["file_name"]).unlink()
    path.write_text(json.dumps(doc))
    return gate(tmp, "coco", "coco", root), doc


@pytest.fixture(scope="module")
def dsb(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dsb")
    root = generate("dsb2018", tmp / "raw")
    samples = sorted((root / "stage1_train").iterdir())
    wrong, grey, empty = (sorted((s / "masks").iterdir())[0] for s in samples[:3])
    Image.new("L", (7, 5), 255).save(wrong)
    diagonal = np.eye(*Image.open(grey).size[::-1], dtype=np.uint8) * 255
    Image.fromarray(np.where(np.asarray(Image.open(grey)) > 0, 128, 0).astype(np.uint8) + diagonal, "L").save(grey)
    Image.new("L", Image.open(empty).size, 0).save(empty)
    labels = root / "stage1_train_labels.csv"
    lines = labels.read_text().splitlines()
    overrun = next(i for i, line in enumerate(lines) if line.startswith(samples[3].name))
    lines[overrun] = f"{samples[3].name},1 999999"
    labels.write_text("\n".join(lines) + "\n")
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    image = rel(next((samples[3] / "images").iterdir()))
    with Image.open(root / image) as im:
        size = (im.height, im.width)
    return gate(tmp, "dsb2018", "dsb2018", root), {"wrong": rel(wrong), "grey": rel(grey), "empty": rel(empty), "overrun": image,
                                                   "overrun_size": size}


# ------------------------------------------------------------------------------------------- defects

FRUIT_DEFECTS = [
    ("truncated JPEG", "Training/Banana/truncated.jpg", "images.decode"),
    ("zero-byte file", "Training/Banana/empty.jpg", "images.decode"),
    ("text file named .jpg", "Training/Banana/notes.jpg", "images.decode"),
    ("PNG named .jpg", "Training/Banana/really_png.jpg", "images.format"),
    ("CMYK JPEG", "Training/Orange/cmyk.jpg", "images.mode"),
    ("16-bit grey PNG in an RGB set", "Training/Orange/grey16.png", "images.mode"),
    ("1x1 image", "Training/Orange/tiny.jpg", "images.min_size"),
    ("image in train and test", "Test/Kiwi/leaked.jpg", "images.no_leakage"),
    ("duplicate within a split", "Training/Orange/copy_of_0.jpg", "images.unique_in_split"),
    ("empty class folder", "class:Lemon", "classes.present"),
]


@pytest.mark.parametrize(("defect", "file", "check"), FRUIT_DEFECTS, ids=[d[0] for d in FRUIT_DEFECTS])
def test_fruits_defect(fruits, defect, file, check):
    result, results = fruits
    assert failures_naming(results, file) == {check: True}
    assert not result.passed


def test_leak_and_duplicate_name_both_files(fruits):
    _, results = fruits
    by_check = {r.check: r for r in results}
    leak = [e for e in by_check["images.no_leakage"].examples if e.startswith("Test/Kiwi/leaked.jpg")]
    assert leak == ["Test/Kiwi/leaked.jpg: also in another split as Training/Kiwi/0_100.jpg"]
    assert {"Training/Orange/0_100.jpg", "Training/Orange/copy_of_0.jpg"} <= named(by_check["images.unique_in_split"])


SIMPSONS_DEFECTS = [
    ("test image of an unknown character", "kaggle_simpson_testset/ned_flanders_1.jpg", "images.label_known", True),
    ("annotation.txt row with x1 > x2 (warns)", "annotation.txt:1", "boxes.x_order", False),
    ("zero-size box (warns)", "annotation.txt:2", "boxes.nonzero_area", False),
    ("row for a missing image", "annotation.txt:81", "boxes.image_known", True),
    ("row a field short", "annotation.txt:82", "boxes.parse", True),
]


@pytest.mark.parametrize(("defect", "file", "check", "blocking"), SIMPSONS_DEFECTS, ids=[d[0] for d in SIMPSONS_DEFECTS])
def test_simpsons_defect(simpsons, defect, file, check, blocking):
    _, results = simpsons
    assert failures_naming(results, file) == {check: blocking}


VOC_DEFECTS = [
    ("unknown class", "annotations/underground_001.xml", "boxes.class_known"),
    ("box outside the image", "annotations/underground_002.xml", "boxes.inside"),
    ("inverted box", "annotations/underground_003.xml", "boxes.x_order"),
    ("zero-area box", "annotations/underground_004.xml", "boxes.nonzero_area"),
    ("<size> mismatch", "images/underground_005.jpg", "images.declared_size"),
    ("missing <size>", "images/underground_006.jpg", "images.declared_size_present"),
    ("malformed XML", "images/underground_008.jpg", "images.annotation"),
    ("<filename> that does not exist", "missing_photo.jpg", "images.exists"),
    ("<filename> with ../", "../../outside.jpg", "images.exists"),
]


@pytest.mark.parametrize(("defect", "file", "check"), VOC_DEFECTS, ids=[d[0] for d in VOC_DEFECTS])
def test_voc_defect(voc, defect, file, check):
    _, results = voc
    assert failures_naming(results, file) == {check: True}


def test_voc_reasons_say_what_is_wrong(voc):
    _, results = voc
    examples = [e for r in results for e in r.examples]
    assert "images/underground_005.jpg: annotation says 4000x" in " ".join(examples)
    assert any("underground_008.xml: line" in e and "malformed XML" in e for e in examples)
    assert any("escapes the images folder" in e for e in examples)
    assert any("class 'bus stop' is not in the class map" in e for e in examples)


def test_coco_defects(coco):
    (_, results), doc = coco
    ann = "annotations/instances_val2017.json"
    by_check = {r.check: r for r in results if not r.passed}
    assert "refers to image '999999'" in " ".join(by_check["boxes.image_known"].examples)
    assert "class '42' is not in the class map" in " ".join(by_check["boxes.class_known"].examples)
    assert "x_min > x_max" in " ".join(by_check["boxes.x_order"].examples)
    assert all(named(by_check[c]) == {ann} for c in ("boxes.image_known", "boxes.class_known", "boxes.x_order"))
    assert by_check["boxes.image_known"].unexpected_count == 1 and by_check["boxes.x_order"].unexpected_count == 1
    first, second = (f"val2017/{doc['images'][i]['file_name']}" for i in (0, 1))
    assert failures_naming(results, first) == {"images.declared_size": True}
    assert failures_naming(results, second) == {"images.exists": True}


@pytest.mark.parametrize(
    ("key", "check"), [("wrong", "masks.same_size"), ("grey", "masks.binary"), ("empty", "masks.non_empty"), ("overrun", "images.rle")]
)
def test_dsb_defect(dsb, key, check):
    (_, results), files = dsb
    assert failures_naming(results, files[key]) == {check: True}
    if key == "overrun":
        (r,) = [r for r in results if r.check == "images.rle"]
        (message,) = [e for e in r.examples if e.startswith(files["overrun"])]
        height, width = files["overrun_size"]
        assert message.endswith(f"stage1_train_labels.csv: run 1 999999 lies outside a {height}x{width} image")


# ---------------------------------------------------------------------------------- gate behaviour


def test_clean_samples_pass_with_the_project_params(tmp_path):
    for name, spec in PARAMS["datasets"].items():
        root = generate(spec["source"], tmp_path / "raw" / name)
        result, results = gate(tmp_path, name, spec["source"], root)
        blocking = [r.check for r in results if not r.passed and r.blocking]
        assert result.passed and not blocking, (name, blocking)


def test_report_has_data_docs_and_a_json_summary(tmp_path):
    root = generate("fruits360", tmp_path / "raw")
    (root / "Training" / "Kiwi" / "bad.jpg").write_bytes(b"not an image")
    gate(tmp_path, "fruits360", "fruits360", root)
    report = tmp_path / "report" / "fruits360"
    assert (report / "data_docs" / "index.html").is_file()
    summary = json.loads((report / "summary.json").read_text())
    (decode,) = [c for c in summary["checks"] if c["check"] == "images.decode"]
    assert decode["passed"] is False and decode["unexpected_count"] == 1 and decode["blocking"] is True
    assert decode["expectation"] == "expect_column_values_to_be_null(decode_error)"
    assert decode["examples"][0].startswith("Training/Kiwi/bad.jpg: UnidentifiedImageError")
    assert not (tmp_path / "validated" / "fruits360").exists()  # stopped: nothing for later stages
    # the Data Docs load nothing from a CDN: a browser offline shows them styled, the failed check marked
    from cvpipe.gate.offline_docs import remote_references
    from tests.browser import chromium, visit

    site = report / "data_docs"
    assert remote_references(site) == [] and (site / "static/styles/offline.css").is_file()
    (page,) = site.glob("validations/fruits360/images/**/*.html")
    assert "fa-times" in page.read_text()  # the failed check's mark, which offline.css draws
    if chromium() is not None:
        for html in (site / "index.html", page):
            seen = visit(html, tmp_path / "browser" / html.stem)
            assert seen.fetched == [] and seen.broken == 0, (html, seen)


def test_examples_are_capped_at_twenty(tmp_path):
    root = generate("fruits360", tmp_path / "raw")
    for k in range(25):
        (root / "Training" / "Kiwi" / f"bad_{k}.jpg").write_bytes(b"")
    _, results = gate(tmp_path, "fruits360", "fruits360", root)
    (decode,) = [r for r in results if r.check == "images.decode"]
    assert decode.unexpected_count == 25 and len(decode.examples) == 20


def test_quarantine_writes_clean_tables_and_keeps_raw_files(tmp_path):
    root = generate("voc", tmp_path / "raw")
    bad_image = root / "images" / "underground_002.jpg"
    bad_image.write_bytes(bad_image.read_bytes()[:300])
    edit_xml(root, 3, first_object_edit(r"<xmax>\d+</xmax>", "<xmax>900</xmax>"))
    result, _ = gate(tmp_path, "underground", "voc", root, on_fail="quarantine")
    assert result.passed and result.quarantined_images == 2 and result.kept_images == voc_sample.IMAGES - 2
    out = tmp_path / "validated" / "underground"
    kept = {r["path"] for r in pq.read_table(out / "manifest.parquet").to_pylist()}
    assert "images/underground_002.jpg" not in kept and "images/underground_003.jpg" not in kept and len(kept) == voc_sample.IMAGES - 2
    assert "images/underground_003.jpg" not in {b["path"] for b in pq.read_table(out / "boxes.parquet").to_pylist()}
    rows = list(csv.DictReader((out / "quarantine.csv").open()))
    assert {(r["file"], r["image"], r["expectation"]) for r in rows} == {
        ("images/underground_002.jpg", "images/underground_002.jpg", "images.decode"),
        ("annotations/underground_003.xml", "images/underground_003.jpg", "boxes.inside"),
    }
    assert all(r["reason"] for r in rows)
    assert bad_image.exists() and (root / "annotations" / "underground_003.xml").exists()  # raw data untouched


def test_quarantine_keeps_the_training_copy_of_a_leaked_image(tmp_path):
    root = generate("fruits360", tmp_path / "raw")
    shutil.copyfile(root / "Training" / "Kiwi" / "0_100.jpg", root / "Test" / "Kiwi" / "leaked.jpg")
    result, _ = gate(tmp_path, "fruits360", "fruits360", root, on_fail="quarantine")
    rows = list(csv.DictReader((tmp_path / "validated" / "fruits360" / "quarantine.csv").open()))
    assert [(r["file"], r["expectation"]) for r in rows] == [("Test/Kiwi/leaked.jpg", "images.no_leakage")]
    assert result.quarantined_images == 1


def test_quarantine_cannot_fix_a_missing_class(tmp_path):
    root = generate("fruits360", tmp_path / "raw")
    (root / "Training" / "Lemon").mkdir()
    result, _ = gate(tmp_path, "fruits360", "fruits360", root, on_fail="quarantine")
    assert not result.passed and not (tmp_path / "validated" / "fruits360").exists()


def test_second_validation_decodes_only_new_images(tmp_path):
    root = generate("fruits360", tmp_path / "raw")
    cache = tmp_path / "decode.sqlite"
    first, _ = gate(tmp_path, "fruits360", "fruits360", root, cache=cache)
    assert (first.decoded, first.decode_cache_hits) == (160, 0)
    shutil.copyfile(root / "Training" / "Kiwi" / "0_100.jpg", root / "Training" / "Kiwi" / "renamed_copy.jpg")
    Image.new("RGB", (100, 100), (10, 200, 30)).save(root / "Training" / "Kiwi" / "new.jpg")
    second, _ = gate(tmp_path, "fruits360", "fruits360", root, cache=cache)
    assert (second.images, second.decoded, second.decode_cache_hits) == (162, 1, 160)  # the copy's bytes are known


def test_cli_failure_is_a_one_screen_summary_without_traceback(tmp_path):
    root = generate("fruits360", tmp_path / "raw")
    (root / "Training" / "Kiwi" / "bad.jpg").write_bytes(b"")
    ingest.run("fruits360", root, tmp_path / "m", on_bad_annotation="record")
    proc = subprocess.run(
        [sys.executable, "-m", "stages.validate", "--manifest-dir", str(tmp_path / "m"), "--task", "classification",
         "--report", str(tmp_path / "r"), "--dataset", "fruits360", "--metrics", str(tmp_path / "metrics.json")],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "FAIL images.decode: expect_column_values_to_be_null(decode_error) - 1 unexpected" in proc.stderr
    assert "Training/Kiwi/bad.jpg: UnidentifiedImageError" in proc.stderr
    assert len(proc.stderr.splitlines()) < 25
    assert json.loads((tmp_path / "metrics.json").read_text())["blocking_failures"] == 1


def test_task_mismatch_is_a_clear_error(tmp_path):
    root = generate("fruits360", tmp_path / "raw")
    ingest.run("fruits360", root, tmp_path / "m")
    proc = subprocess.run(
        [sys.executable, "-m", "stages.validate", "--manifest-dir", str(tmp_path / "m"), "--task", "detection",
         "--report", str(tmp_path / "r")],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "dataset.json: task is 'classification', validated as 'detection'" in proc.stderr


REAL = [
    ("coco", "coco128", GateConfig(task="detection", source="coco", modes=("RGB", "L"), min_images_per_class=1,
                                   warn=frozenset({"classes.present", "classes.imbalance"}))),
    ("voc", "voc_labelimg_raccoon", GateConfig(task="detection", source="voc")),
    ("dsb2018", "dsb2018_nuclei", GateConfig(task="segmentation", source="dsb2018", modes=("RGBA", "RGB", "L"))),
    ("fruits360", "fruits360_shapes_layout_only", GateConfig(task="classification", source="fruits360", modes=("L",))),
]


@pytest.mark.parametrize(("source", "folder", "cfg"), REAL, ids=[r[1] for r in REAL])
def test_real_extracts_pass(realdata, tmp_path, source, folder, cfg):
    """Settings fit to each extract: coco128 is too small for a class minimum, the shapes are 1-channel."""
    result, results = gate(tmp_path, folder, source, realdata / folder, cfg=cfg)
    assert result.passed, [(r.check, r.examples[:3]) for r in results if not r.passed and r.blocking]
    if source == "dsb2018":
        assert any(r.check == "images.rle" and r.passed for r in results)  # the official encodings match


def test_only_the_offending_box_of_an_annotation_is_reported(tmp_path):
    root = generate("voc", tmp_path / "raw")
    xml = next(p for p in sorted((root / "annotations").glob("*.xml")) if p.read_text().count("<object>") >= 2)
    xml.write_text(re.sub(r"<xmax>\d+</xmax>", "<xmax>900</xmax>", xml.read_text(), count=1))
    _, results = gate(tmp_path, "underground", "voc", root)
    failed = [r for r in results if not r.passed]
    assert [(r.check, r.unexpected_count, len(r.rows)) for r in failed if r.check == "boxes.inside"] == [("boxes.inside", 1, 1)]
    (example,) = next(r for r in failed if r.check == "boxes.inside").examples
    assert f"annotations/{xml.name}" in example and ", 900, " in example


def test_quarantine_drops_only_the_box_on_an_unknown_coco_image(tmp_path):
    root = generate("coco", tmp_path / "raw")
    path = root / "annotations" / "instances_val2017.json"
    doc = json.loads(path.read_text())
    doc["annotations"][0]["image_id"] = 999999
    path.write_text(json.dumps(doc))
    result, _ = gate(tmp_path, "coco", "coco", root, on_fail="quarantine")
    before = pq.read_table(tmp_path / "manifests" / "coco" / "boxes.parquet").num_rows
    after = pq.read_table(tmp_path / "validated" / "coco" / "boxes.parquet").to_pylist()
    assert result.passed and result.quarantined_images == 0 and len(after) == before - 1
    assert str(doc["annotations"][0]["id"]) not in {b["source_id"] for b in after if b["annotation"].endswith("val2017.json")}
    rows = list(csv.DictReader((tmp_path / "validated" / "coco" / "quarantine.csv").open()))
    assert [(r["file"], r["image"], r["expectation"]) for r in rows] == [("annotations/instances_val2017.json", "", "boxes.image_known")]
