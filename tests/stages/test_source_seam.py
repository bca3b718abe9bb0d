"""The source seam: ingest, validate, convert and the gate name no source; a new layout is one module
and one registry entry, with its reader, sample, gate check and converters, and no stage file edited."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from cvpipe.sources import SOURCES, conversion_kinds, get_source
from stages import convert, ingest, samples, validate
from tests.conftest import REPO

SOURCE_NAMES = re.compile(r"coco|voc|simpsons|dsb|fruits", re.IGNORECASE)
TASK_NAMES = re.compile(r"classif|detect|segment", re.IGNORECASE)


@pytest.mark.parametrize("path", ["stages/ingest.py", "stages/convert.py", "stages/validate.py",
                                  *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "cvpipe" / "gate").glob("*.py"))])
def test_the_data_stages_and_the_gate_name_no_source(path):
    text = (REPO / path).read_text(encoding="utf-8")
    assert not SOURCE_NAMES.findall(text), path


@pytest.mark.parametrize("path", sorted(p.relative_to(REPO).as_posix() for p in (REPO / "stages").glob("*.py")))
def test_no_stage_names_a_source_or_a_task(path):
    """Stages look sources and tasks up in their registries; none is named in a stage."""
    text = (REPO / path).read_text(encoding="utf-8")
    assert not SOURCE_NAMES.findall(text), path
    assert not TASK_NAMES.findall(text), path


def test_every_registered_source_is_complete():
    for name in SOURCES:
        source = get_source(name)
        assert source.name == name and source.task in ("classification", "detection", "segmentation")
        assert callable(source.reader) and source.sample.count(":") == 1
    kinds = conversion_kinds()
    assert {"coco-yolo", "voc-yolo", "simpsons-yolo", "coco-tfrecord", "voc-tfrecord", "dsb-masks", "dsb-rle"} <= set(kinds)
    assert kinds["dsb-rle"] == ("dsb2018", "rle") and "fruits360-yolo" not in kinds


def test_an_unknown_source_names_the_registered_ones():
    with pytest.raises(Exception, match=r"unknown source 'nope'; choose one of coco, fruits360"):
        get_source("nope")


# A layout of its own: ``labels.csv`` (file,x0,y0,x1,y1) beside PNG images; its gate check fails an
# image whose name starts with ``x_``. It lives in tmp_path only: no file of the project is edited.
DUMMY = '''
from pathlib import Path

from PIL import Image

from cvpipe.data.classmap import ClassMap
from cvpipe.data.manifest import ImageRef, ReadResult
from cvpipe.sources import Source, SourceCheck


def read(root, options):
    rows = [line.split(",") for line in (root / "labels.csv").read_text().splitlines()]
    files = sorted(root.glob("*.png"))
    images = [ImageRef(file=f, path=f.name, split="unsplit", source_id=f.name) for f in files]
    boxes = [{"path": r[0], "split": "unsplit", "class_index": 0, "class_name": "dot", "x_min": float(r[1]),
              "y_min": float(r[2]), "x_max": float(r[3]), "y_max": float(r[4]), "iscrowd": False, "difficult": False,
              "truncated": False, "pose": None, "annotation": f"labels.csv:{n}", "source_id": str(n),
              "source_class": "dot", "source_image": r[0], "error": None} for n, r in enumerate(rows, 1)]
    return ReadResult(task="detection", classes=ClassMap.from_names(["dot"]), images=images, boxes=boxes,
                      splits=[("unsplit", ".")])


def generate(out, rng):
    lines = []
    for k in range(8):
        Image.new("RGB", (32, 32), tuple(int(v) for v in rng.integers(0, 255, 3))).save(out / f"img{k}.png")
        lines.append(f"img{k}.png,4,4,{10 + k},{12 + k}")
    (out / "labels.csv").write_text("\\n".join(lines) + "\\n")


def columns(root, images, masks, workers):
    return {"dummy_ok": [not Path(p).name.startswith("x_") for p in images["path"]]}


SOURCE = Source(
    name="dummy", task="detection", reader=read, sample="dummy_source:generate", sample_stream=99,
    converters=("yolo",), gate_columns=columns,
    gate_checks=(SourceCheck("images.dummy_name", "images", "ExpectColumnValuesToBeInSet",
                             {"column": "dummy_ok", "value_set": [True]}, lambda r: "named x_: not allowed here"),),
)
'''


@pytest.fixture
def dummy(tmp_path, monkeypatch):
    """The dummy source registered for this test only, and a params.yaml with one dataset of it."""
    (tmp_path / "dummy_source.py").write_text(textwrap.dedent(DUMMY), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(SOURCES, "dummy", "dummy_source:SOURCE")
    params = tmp_path / "params.yaml"
    params.write_text("datasets:\n  toy: {source: dummy, task: detection}\nvalidate: {on_fail: stop}\n", encoding="utf-8")
    return tmp_path, params


def test_a_new_source_runs_through_ingest_validate_and_convert(dummy, capsys):
    tmp, params = dummy
    assert samples.run({"toy": "dummy"}, tmp / "raw") == ["toy"]
    raw, manifest, validated = tmp / "raw" / "toy", tmp / "manifests" / "toy", tmp / "validated" / "toy"
    assert ingest.main(["--source", "dummy", "--root", str(raw), "--out", str(manifest), "--params", str(params)]) == 0
    assert json.loads((manifest / "dataset.json").read_text())["source"] == "dummy"
    report = tmp / "reports" / "toy"
    assert validate.main(["--manifest-dir", str(manifest), "--task", "detection", "--dataset", "toy", "--report", str(report),
                          "--out", str(validated), "--params", str(params)]) == 0
    checks = {c["check"]: c for c in json.loads((report / "summary.json").read_text())["checks"]}
    assert checks["images.dummy_name"]["passed"] and checks["images.dummy_name"]["expectation"].endswith("(dummy_ok)")
    out = tmp / "yolo" / "toy"
    assert convert.main(["yolo", "--manifest-dir", str(validated), "--out", str(out), "--params", str(params)]) == 0
    assert len(list((out / "labels").rglob("*.txt"))) == 8 and "dummy-yolo" in convert.kinds()

    # the layout's own check runs: an image it refuses stops the gate, by the check's id
    (raw / "img0.png").rename(raw / "x_img0.png")
    (raw / "labels.csv").write_text((raw / "labels.csv").read_text().replace("img0.png", "x_img0.png"))
    assert ingest.main(["--source", "dummy", "--root", str(raw), "--out", str(manifest), "--params", str(params)]) == 0
    capsys.readouterr()
    assert validate.main(["--manifest-dir", str(manifest), "--task", "detection", "--dataset", "toy", "--report", str(report),
                          "--params", str(params)]) == 1
    assert "FAIL images.dummy_name" in capsys.readouterr().err


def test_a_dataset_listed_for_a_target_its_source_does_not_offer_is_one_params_error(dummy, capsys):
    tmp, params = dummy
    samples.run({"toy": "dummy"}, tmp / "raw")
    manifest = tmp / "manifests" / "toy"
    assert ingest.main(["--source", "dummy", "--root", str(tmp / "raw" / "toy"), "--out", str(manifest), "--params", str(params)]) == 0
    capsys.readouterr()
    assert convert.main(["tfrecord", "--manifest-dir", str(manifest), "--out", str(tmp / "tf"), "--params", str(params)]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "convert.tfrecord: lists toy, whose source dummy offers no tfrecord conversion (it offers: yolo)" in line
    assert not (tmp / "tf").exists()


def test_a_plain_target_needs_a_manifest(tmp_path):
    with pytest.raises(ValueError, match="yolo converts a manifest: give --manifest-dir"):
        convert.run("yolo", tmp_path / "out", tmp_path / "a.json", tmp_path)
