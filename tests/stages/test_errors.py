"""One error path: every entry point turns an expected failure into one ``error: ...`` line naming the
file or the params key and what would be valid, and exits 1; never a traceback, nothing written."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cvpipe.mlops import serve
from flows import deploy, pipeline
from stages import convert, evaluate, ingest, register, samples, train, validate
from tests.conftest import REPO
from tests.cvpipe.classification.conftest import fruits_manifest  # noqa: F401 - fixture

ENTRY_POINTS = {"ingest": ingest, "validate": validate, "convert": convert, "train": train, "evaluate": evaluate,
                "register": register, "samples": samples, "pipeline": pipeline, "deploy": deploy}


def params_with(tmp_path: Path, change) -> Path:
    """A copy of the project's params.yaml with ``change(params)`` applied."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    change(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def fails_with(capsys, module, argv: list[str], *expected: str) -> str:
    assert module.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


def stage_argv(name: str, folder: Path, tmp_path: Path) -> list[str]:
    """Each stage pointed at ``folder`` as its manifest folder (or raw root, for ingest); evaluate reads a model's
    train.json (an empty record: the task's defaults) before its data."""
    out = str(tmp_path / "out")
    if name == "evaluate":
        (tmp_path / "m").mkdir(exist_ok=True)
        (tmp_path / "m" / "train.json").write_text('{"params": {}}')
    return {
        "ingest": ["--source", "fruits360", "--root", str(folder), "--out", out],
        "validate": ["--manifest-dir", str(folder), "--task", "classification", "--report", out, "--dataset", "fruits360"],
        "convert": ["voc-yolo", "--manifest-dir", str(folder), "--out", out],
        "train": ["--dataset", "fruits360", "--manifest-dir", str(folder), "--out", out],
        "evaluate": ["--dataset", "fruits360", "--manifest-dir", str(folder), "--model-dir", str(tmp_path / "m"), "--out", out],
        "register": ["--dataset", "fruits360", "--manifest-dir", str(folder), "--model-dir", str(tmp_path / "m"),
                     "--eval-dir", str(tmp_path / "e"), "--out", str(tmp_path / "out.json")],
    }[name]


MANIFEST_STAGES = ["validate", "convert", "train", "evaluate", "register"]


@pytest.mark.parametrize("name", MANIFEST_STAGES)
def test_a_missing_manifest_folder_is_named(name, tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    fails_with(capsys, ENTRY_POINTS[name], stage_argv(name, missing, tmp_path), f"{missing}: no such manifest folder", "dvc repro")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", MANIFEST_STAGES)
def test_an_empty_manifest_folder_is_named(name, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    fails_with(capsys, ENTRY_POINTS[name], stage_argv(name, empty, tmp_path), f"{empty}: not a manifest folder (no dataset.json)")
    assert not (tmp_path / "out").exists()


def test_ingest_names_a_missing_or_empty_dataset_folder(tmp_path, capsys):
    fails_with(capsys, ingest, stage_argv("ingest", tmp_path / "none", tmp_path), str(tmp_path / "none"))
    (tmp_path / "empty").mkdir()
    fails_with(capsys, ingest, stage_argv("ingest", tmp_path / "empty", tmp_path), str(tmp_path / "empty"))


@pytest.mark.parametrize("name", ["train", "evaluate", "register", "samples", "pipeline"])
def test_an_unknown_dataset_lists_the_known_ones(name, tmp_path, capsys):
    paths = {"train": ["--data-dir", "d", "--out", "o"], "evaluate": ["--model-dir", "m", "--data-dir", "d", "--out", "o"],
             "register": ["--model-dir", "m", "--eval-dir", "e", "--manifest-dir", "d", "--out", "o.json"]}
    fails_with(capsys, ENTRY_POINTS[name], ["--dataset", "nope", "--params", str(REPO / "params.yaml"), *paths.get(name, [])],
               "datasets: has no dataset 'nope'; listed: coco, fruits360")


def test_validate_names_an_unknown_dataset(tmp_path, capsys, fruits_manifest):  # noqa: F811
    argv = stage_argv("validate", fruits_manifest, tmp_path)
    argv[argv.index("--dataset") + 1] = "nope"
    fails_with(capsys, validate, argv, "datasets: has no dataset 'nope'")


def fruits(params: dict) -> dict:
    return params["classification"]["datasets"]["fruits360"]


BAD_PARAMS = [
    ("validate", lambda p: p["validate"].update(on_fail="maybe"), "validate.on_fail: is 'maybe'; choose one of stop, quarantine"),
    ("validate", lambda p: p["validate"].update(min_width="sixteen"), "validate.min_width: must be an integer, not 'sixteen'"),
    ("validate", lambda p: p["validate"].update(max_imbalance_ratio=0), "validate.max_imbalance_ratio: must be a number >= 1"),
    ("validate", lambda p: p["datasets"]["fruits360"].update(modes="RGB"),
     "datasets.fruits360.modes: must be a list of strings such as [RGB]"),
    ("validate", lambda p: p["validate"].update(min_widht=3), "validate.min_widht: unknown key; known keys:"),
    ("train", lambda p: fruits(p).update(optimizer="adamw"),
     "classification.datasets.fruits360.optimizer: is 'adamw'; choose one of sgd, adam, rmsprop"),
    ("train", lambda p: fruits(p).update(epochs=-3), "classification.datasets.fruits360.epochs: must be an integer >= 1, not -3"),
    ("train", lambda p: fruits(p).update(epochs=0), "classification.datasets.fruits360.epochs: must be an integer >= 1, not 0"),
    ("train", lambda p: fruits(p).update(epochs="3"), "classification.datasets.fruits360.epochs: must be an integer, not '3'"),
    ("train", lambda p: fruits(p).update(lr="fast"), "classification.datasets.fruits360.lr: must be a number, not 'fast'"),
    ("train", lambda p: fruits(p).update(batch_size=0), "classification.datasets.fruits360.batch_size: must be an integer >= 1"),
    ("train", lambda p: fruits(p).update(epocs=3), "classification.datasets.fruits360.epocs: unknown key; known keys: architecture"),
    ("train", lambda p: fruits(p)["augment"].update(spin=3), "classification.datasets.fruits360.augment.spin: unknown key"),
    ("train", lambda p: p["train"].update(device="gpu"), "train.device: is 'gpu'; choose auto, cpu, cuda or cuda:N"),
    ("evaluate", lambda p: p["train"].update(device="gpu"), "train.device: is 'gpu'"),
    ("train", lambda p: p["train"].update(cpu_threads=0), "train.cpu_threads: must be an integer >= 1, not 0"),
    ("evaluate", lambda p: p["train"].update(cpu_threads="all"), "train.cpu_threads: must be an integer, not 'all'"),
    ("register", lambda p: p["registry"].update(min_delta=-1), "registry.min_delta: must be a number >= 0, not -1"),
    ("register", lambda p: p["datasets"]["fruits360"].update(task="ocr"),
     "datasets.fruits360.task: is 'ocr'; choose one of classification"),
    ("pipeline", lambda p: p["datasets"]["fruits360"].pop("source"), "datasets.fruits360.source: missing"),
    ("deploy", lambda p: p["schedules"][0].update(cron="every night"), "schedules[0].cron: is 'every night', not a cron expression"),
    ("deploy", lambda p: p["schedules"][0].update(flow="nightly"), "schedules[0].flow: is 'nightly'; choose one of pipeline, predict"),
    ("deploy", lambda p: p["schedules"][2]["parameters"].update(folder="x"),
     "schedules.predict.parameters: ['folder'] are not parameters of the predict flow (model, images, out, batch_size"),
]


@pytest.mark.parametrize(("name", "change", "expected"), BAD_PARAMS, ids=[f"{n}-{e.split(':')[0]}" for n, _, e in BAD_PARAMS])
def test_bad_values_in_params_yaml_name_the_key(name, change, expected, tmp_path, capsys, fruits_manifest):  # noqa: F811
    params = params_with(tmp_path, change)
    flows_argv = {"deploy": [], "pipeline": ["--dataset", "fruits360"]}
    argv = flows_argv[name] if name in flows_argv else stage_argv(name, fruits_manifest, tmp_path)
    fails_with(capsys, ENTRY_POINTS[name], [*argv, "--params", str(params)], f"{params}: {expected}")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.json").exists()


def test_a_stage_run_as_a_module_prints_one_line_and_exits_1(tmp_path):
    params = params_with(tmp_path, lambda p: fruits(p).update(epochs=-3))
    proc = subprocess.run([sys.executable, "-m", "stages.train", "--dataset", "fruits360", "--params", str(params),
                           "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "model")],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: {params}: classification.datasets.fruits360.epochs: "
                                                "must be an integer >= 1, not -3"]
    assert not (tmp_path / "model").exists()  # nothing half-written: no untrained model.pt


# Registry and server faults: the MLflow store or tracking server cannot be used. Register checks it before any
# run or version is made (nothing half-registered) and fails within seconds; serving a model checks the server.


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_read_only(path: Path) -> None:
    """``path`` unwritable even for root (immutable: ``chattr +i``); only the mode bits otherwise."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(path)], check=False, capture_output=True).returncode:
            pytest.skip("no chattr here: root cannot make a file read-only")
    else:
        path.chmod(0o555 if path.is_dir() else 0o444)


def writable_again(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], check=False, capture_output=True)
    else:
        path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture
def sqlite_store(tmp_path, monkeypatch) -> Iterator[Path]:
    """A real MLflow SQLite store (its experiment made) in ``tmp_path/store``; left writable for cleanup."""
    import mlflow

    root = tmp_path / "store"
    root.mkdir()
    uri = f"sqlite:///{root / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("fruits360", artifact_location=(root / "artifacts").as_uri())
    yield root
    for path in (root / "mlflow.db", root):
        writable_again(path)


def read_only_database(root: Path, monkeypatch) -> str:
    make_read_only(root / "mlflow.db")
    return f"the MLflow store {root / 'mlflow.db'} is read-only: the database file {root / 'mlflow.db'} is not writable"


def read_only_folder(root: Path, monkeypatch) -> str:
    make_read_only(root)
    return f"the MLflow store {root / 'mlflow.db'} is read-only: its folder {root} is not writable"


def server_not_answering(root: Path, monkeypatch) -> str:
    uri = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return f"the MLflow tracking server at {uri} (MLFLOW_TRACKING_URI) does not answer within 3 s"


REGISTRY_FAULTS = {"read-only-database": read_only_database, "read-only-folder": read_only_folder,
                   "server-not-answering": server_not_answering}


def trained_stub(tmp_path: Path) -> None:
    """What register reads before it opens the store: a model's records and an evaluation (no model is loaded)."""
    (tmp_path / "m").mkdir(exist_ok=True)
    (tmp_path / "m" / "train.json").write_text('{"params": {}}')
    (tmp_path / "m" / "history.csv").write_text("epoch,loss\n1,0.5\n")
    (tmp_path / "e").mkdir(exist_ok=True)
    (tmp_path / "e" / "metrics.json").write_text('{"macro_f1": 0.5}')


@pytest.mark.parametrize("fault", REGISTRY_FAULTS)
def test_register_names_a_store_or_server_it_cannot_use_before_registering(fault, sqlite_store, tmp_path, monkeypatch, capsys,
                                                                           fruits_manifest):  # noqa: F811
    import mlflow

    trained_stub(tmp_path)
    expected = REGISTRY_FAULTS[fault](sqlite_store, monkeypatch)
    start = time.monotonic()
    fails_with(capsys, register, [*stage_argv("register", fruits_manifest, tmp_path), "--params", str(REPO / "params.yaml")],
               expected)
    assert time.monotonic() - start < 15  # not MLflow's minutes of retries
    assert not (tmp_path / "out.json").exists()
    store = mlflow.MlflowClient(tracking_uri=f"sqlite:///{sqlite_store / 'mlflow.db'}")
    assert store.search_runs([store.get_experiment_by_name("fruits360").experiment_id]) == []  # nothing half-registered
    assert store.search_registered_models() == []


def test_serving_names_a_tracking_server_that_does_not_answer(tmp_path, monkeypatch, capsys):
    expected = server_not_answering(tmp_path, monkeypatch)
    start = time.monotonic()
    fails_with(capsys, serve, ["fruits360-classifier"], expected)
    assert time.monotonic() - start < 15


def test_register_run_as_a_module_fails_fast_on_a_server_that_does_not_answer(tmp_path, fruits_manifest):  # noqa: F811
    trained_stub(tmp_path)
    uri = f"http://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "stages.register", *stage_argv("register", fruits_manifest, tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
                          env=dict(os.environ, MLFLOW_TRACKING_URI=uri))
    assert proc.returncode == 1 and time.monotonic() - start < 60
    assert proc.stderr.strip().splitlines() == [f"error: the MLflow tracking server at {uri} (MLFLOW_TRACKING_URI) does not "
                                                "answer within 3 s ([Errno 111] Connection refused); start it (make "
                                                "mlflow-server) or unset MLFLOW_TRACKING_URI for the local store"]
