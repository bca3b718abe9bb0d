"""stages.ingest: files written, counts returned, and one clear line for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from cvpipe.data.classmap import ClassMap
from cvpipe.data.manifest import MANIFEST_SCHEMA
from cvpipe.sources.samples import coco as coco_sample
from cvpipe.sources.samples import generate
from stages import ingest
from tests.conftest import REPO, write_image


def test_run_writes_manifest_boxes_and_class_map(tmp_path):
    root = generate("coco", tmp_path / "coco")
    result = ingest.run("coco", root, tmp_path / "out", workers=2)
    manifest = pq.read_table(tmp_path / "out" / "manifest.parquet")
    assert manifest.schema.equals(MANIFEST_SCHEMA)
    assert manifest.num_rows == result.images == sum(coco_sample.SPLITS.values())
    assert result.images_per_split == {"train": coco_sample.SPLITS["train2017"], "val": coco_sample.SPLITS["val2017"]}
    assert pq.read_table(tmp_path / "out" / "boxes.parquet").num_rows == result.boxes
    assert ClassMap.load(tmp_path / "out" / "classes.json").names == ["circle", "square", "triangle", "ring"]
    assert not (tmp_path / "out" / "masks.parquet").exists()
    assert result.unreadable_images == 0


def test_manifest_rows_are_in_reader_order_whatever_the_workers(tmp_path):
    root = generate("fruits360", tmp_path / "fruits")
    ingest.run("fruits360", root, tmp_path / "one", workers=1)
    ingest.run("fruits360", root, tmp_path / "four", workers=4)
    assert pq.read_table(tmp_path / "one" / "manifest.parquet").equals(pq.read_table(tmp_path / "four" / "manifest.parquet"))


def test_unreadable_images_are_recorded_not_fatal(tmp_path):
    write_image(tmp_path / "Training" / "Kiwi" / "good.jpg")
    (tmp_path / "Training" / "Kiwi" / "truncated.jpg").write_bytes(b"\xff\xd8\xff")
    (tmp_path / "Training" / "Kiwi" / "empty.jpg").write_bytes(b"")
    result = ingest.run("fruits360", tmp_path, tmp_path / "out")
    rows = pq.read_table(tmp_path / "out" / "manifest.parquet").to_pylist()
    errors = {r["path"].rsplit("/", 1)[1]: r["probe_error"] for r in rows}
    assert result.unreadable_images == 2 and errors["good.jpg"] is None
    assert errors["empty.jpg"].startswith("UnidentifiedImageError")
    assert all(r["sha256"] for r in rows)  # hashed all the same: the gate reports them by file


def test_main_writes_metrics(tmp_path):
    root = generate("dsb2018", tmp_path / "dsb")
    code = ingest.main(["--source", "dsb2018", "--root", str(root), "--out", str(tmp_path / "out"), "--metrics", str(tmp_path / "m.json")])
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert code == 0 and metrics["masks"] == 1502 and metrics["task"] == "segmentation"


@pytest.mark.parametrize(
    ("source", "setup", "message"),
    [
        ("coco", lambda r: None, "missing: COCO root not found"),
        ("voc", lambda r: (r.mkdir(), (r / "x.xml").write_text("<annotation>")), "x.xml:1: malformed XML"),
        ("simpsons", lambda r: (r.mkdir(), (r / "simpsons_dataset").write_text("")), "is not a directory"),
    ],
)
def test_cli_bad_input_is_one_line_and_non_zero(tmp_path, source, setup, message):
    root = tmp_path / "missing"
    setup(root)
    proc = subprocess.run(
        [sys.executable, "-m", "stages.ingest", "--source", source, "--root", str(root), "--out", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line and str(tmp_path) in line
    assert not (tmp_path / "out" / "manifest.parquet").exists()


def test_record_policy_writes_bad_annotations_into_the_tables(tmp_path):
    root = generate("voc", tmp_path / "voc")
    (root / "annotations" / "underground_003.xml").write_text("<annotation><filename>")
    with pytest.raises(Exception, match=r"underground_003\.xml"):
        ingest.run("voc", root, tmp_path / "stop")
    result = ingest.run("voc", root, tmp_path / "out", on_bad_annotation="record")
    rows = pq.read_table(tmp_path / "out" / "manifest.parquet").to_pylist()
    (bad,) = [r for r in rows if r["annotation_error"]]
    assert bad["path"] == "images/underground_003.jpg" and result.unreadable_images == 1
    assert json.loads((tmp_path / "out" / "dataset.json").read_text()) == {
        "source": "voc", "task": "detection", "root": str(root), "splits": {"unsplit": "."},
        "rows": {"manifest.parquet": len(rows), "boxes.parquet": pq.read_metadata(tmp_path / "out" / "boxes.parquet").num_rows}}


def test_a_killed_ingest_leaves_the_old_complete_folder_and_mixed_tables_are_refused(tmp_path):
    """The manifest folder is replaced as one unit; tables of two runs side by side are named, not used."""
    from cvpipe.core.errors import DataError
    from cvpipe.data.manifest import read_manifest_dir

    root = generate("dsb2018", tmp_path / "raw")
    out = tmp_path / "m"
    ingest.run("dsb2018", root, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code = (f"import os, stages.ingest as i, cvpipe.data.manifest as m\n"
            f"real = m.write_table\n"
            f"def dying(rows, schema, target):\n"
            f"    n = real(rows, schema, target)\n"
            f"    if str(target).endswith('masks.parquet'): os.kill(os.getpid(), 9)\n"
            f"    return n\n"
            f"i.write_table = dying\n"
            f"from pathlib import Path\n"
            f"i.run('dsb2018', Path({str(root)!r}), Path({str(out)!r}))\n")
    sample = sorted((root / "stage1_train").iterdir())[0]
    shutil.rmtree(sample)  # the second run would write different tables
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, timeout=300, check=False)
    assert proc.returncode == -9
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old folder, whole

    # a folder mixing a new manifest.parquet with an old masks.parquet is refused by every reader
    ingest.run("dsb2018", root, tmp_path / "new")
    shutil.copyfile(tmp_path / "new" / "manifest.parquet", out / "manifest.parquet")
    with pytest.raises(DataError, match=r"manifest\.parquet: .* rows, but dataset\.json says .*mixes files of different runs"):
        read_manifest_dir(out)
