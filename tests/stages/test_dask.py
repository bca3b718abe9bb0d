"""The data stages on a local Dask cluster write the very bytes of a sequential run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from cvpipe.sources.samples import generate
from stages import convert, ingest, validate
from tests.conftest import REPO


def params_file(folder: Path, dask: dict | None, workers: int) -> Path:
    """The project's params.yaml with another ``dask`` section, no decode cache, ``workers`` threads."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["dask"] = dask
    params["validate"].update(cache=None, workers=workers)
    path = folder / ("params-dask.yaml" if dask else "params-sequential.yaml")
    path.write_text(yaml.safe_dump(params))
    return path


def data_flow(raw: Path, out: Path, params: Path, workers: int) -> None:
    """ingest, validate and convert of a COCO and a DSB2018 sample, as dvc.yaml runs them."""
    common = ["--params", str(params)]
    for name, source, task in (("coco", "coco", "detection"), ("dsb2018", "dsb2018", "segmentation")):
        assert ingest.main(["--source", source, "--root", str(raw / name), "--out", str(out / "manifests" / name),
                            "--workers", str(workers), "--on-bad-annotation", "record", *common]) == 0
        assert validate.main(["--manifest-dir", str(out / "manifests" / name), "--task", task, "--dataset", name,
                              "--report", str(out / "reports" / name), "--out", str(out / "validated" / name),
                              "--metrics", str(out / "reports" / f"{name}.json"), *common]) == 0
    for kind, target in (("coco-yolo", "yolo"), ("coco-tfrecord", "tfrecord")):
        assert convert.main([kind, "--manifest-dir", str(out / "validated" / "coco"), "--out", str(out / target),
                             "--shards", "2", "--workers", str(workers), *common]) == 0
    dsb = raw / "dsb2018"
    assert convert.main(["dsb-rle", "--images", str(dsb / "stage1_train"), "--out", str(out / "labels.csv"),
                         "--workers", str(workers), *common]) == 0
    assert convert.main(["dsb-masks", "--annotations", str(dsb / "stage1_train_labels.csv"), "--images",
                         str(dsb / "stage1_train"), "--out", str(out / "masks"), "--workers", str(workers), *common]) == 0


def tree(folder: Path) -> dict[str, tuple[bool, bytes]]:
    """Every file under ``folder`` (but Great Expectations' Data Docs, which carry run times): is it a
    link, and its bytes."""
    files = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            if "/data_docs/" not in f"/{rel}":
                files[rel] = (path.is_symlink(), path.read_bytes())
    return files


@pytest.mark.slow
def test_data_flow_on_a_local_dask_cluster_writes_the_same_bytes(tmp_path, caplog):
    raw = tmp_path / "raw"
    for name in ("coco", "dsb2018"):
        generate(name, raw / name)
    out = tmp_path / "out"  # both runs write here (paths are written into data.yaml and dataset.json)
    data_flow(raw, out, params_file(tmp_path, None, workers=1), workers=1)
    sequential = tree(out)
    shutil.rmtree(out)
    caplog.set_level("INFO", logger="cvpipe.data.parallel")
    data_flow(raw, out, params_file(tmp_path, {"workers": 2, "threads_per_worker": 1, "min_items": 0}, workers=1), workers=1)
    on_dask = tree(out)
    assert caplog.text.count("dask: local cluster, 2 processes") == 8  # every stage started its cluster
    assert len(sequential) > 1000 and sorted(on_dask) == sorted(sequential)
    assert [f for f in sequential if on_dask[f] != sequential[f]] == []


@pytest.mark.slow
def test_a_bad_record_fails_on_dask_with_the_sequential_error(tmp_path, capsys):
    dsb = generate("dsb2018", tmp_path / "dsb2018")
    labels = (dsb / "stage1_train_labels.csv").read_text().splitlines()
    image_id, _ = labels[5].split(",")
    labels[5] = f"{image_id},1 99999999"  # runs past the image
    (dsb / "stage1_train_labels.csv").write_text("\n".join(labels) + "\n")
    errors = []
    for name, dask in (("sequential", None), ("dask", {"workers": 2, "min_items": 0})):
        args = ["dsb-masks", "--annotations", str(dsb / "stage1_train_labels.csv"), "--images", str(dsb / "stage1_train"),
                "--out", str(tmp_path / name), "--params", str(params_file(tmp_path, dask, workers=1))]
        assert convert.main(args) == 1
        errors.append(capsys.readouterr().err.strip().splitlines()[-1])
    assert errors[0] == errors[1] and errors[0].startswith("error: ") and ":6: ImageId" in errors[0]
