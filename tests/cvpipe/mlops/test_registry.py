from __future__ import annotations

import json

import pytest

from cvpipe.mlops.evidence import Interval
from cvpipe.mlops.registry import dvc_lineage, flatten, promotion_decision, tracking_uri


def exact(new: float, old: float) -> Interval:
    """The interval of a difference known exactly (every resample agrees)."""
    return Interval(new - old, new - old, new - old, 0.95, 1000, 100)


def test_first_model_is_promoted():
    d = promotion_decision(0.8, {"a": 0.8}, None, None, 0.0, 0.05)
    assert d.promote and "no champion" in d.reason and d.difference is None
    own = Interval(0.8, 0.7, 0.9, 0.95, 1000, 50)
    d = promotion_decision(0.8, {"a": 0.8}, None, None, 0.0, 0.05, "dsb_score", own=own)
    assert d.reason == "no champion yet; dsb_score 0.8000 (95% CI 0.7000 to 0.9000, 1000 resamples of 50 images)" and d.own == own


def test_a_tie_or_a_gain_within_min_delta_does_not_promote():
    assert not promotion_decision(0.9, {"a": 0.9}, 0.9, {"a": 0.9}, 0.0, 0.05, difference=exact(0.9, 0.9)).promote
    d = promotion_decision(0.91, {"a": 0.91}, 0.9, {"a": 0.9}, 0.02, 0.05, difference=exact(0.91, 0.9))
    assert not d.promote and "not above min_delta 0.02" in d.reason
    with pytest.raises(ValueError, match="paired interval"):
        promotion_decision(0.91, {"a": 0.91}, 0.9, {"a": 0.9}, 0.0, 0.05)


def test_a_better_model_that_sacrifices_one_class_is_not_promoted():
    champion = {"a": 0.9, "b": 0.9, "c": 0.9}
    new = {"a": 1.0, "b": 1.0, "c": 0.8}  # macro-F1 up from 0.9 to 0.933, but c drops by 0.1
    mean = sum(new.values()) / 3
    d = promotion_decision(mean, new, 0.9, champion, 0.0, 0.05, difference=exact(mean, 0.9))
    assert not d.promote and "'c' drops by 0.1000" in d.reason and d.changes["c"] == pytest.approx(-0.1)
    assert promotion_decision(mean, new, 0.9, champion, 0.0, 0.15, difference=exact(mean, 0.9)).promote


def test_flatten_and_tracking_uri(tmp_path, monkeypatch):
    assert flatten({"a": 1, "b": {"c": 2, "d": {"e": None}}}) == {"a": 1, "b.c": 2, "b.d.e": None}
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(tmp_path / "mlruns") == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(tmp_path / "mlruns") == "http://127.0.0.1:5000"


def test_dvc_lineage_reads_the_train_stage_of_the_lock(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        "schema: '2.0'\nstages:\n  train@toy:\n    cmd: python -m stages.train --dataset toy --out models/toy\n    deps:\n"
        "    - path: data/validated/toy\n      md5: abc.dir\n    - path: stages/train.py\n      md5: fff\n"
        "    params:\n      params.yaml:\n        classification.datasets.toy:\n          epochs: 3\n"
        "    outs:\n    - path: models/toy\n      md5: def.dir\n"
    )
    tags = dvc_lineage(lock, "toy")
    assert tags["dvc.dep.data/validated/toy"] == "abc.dir" and tags["dvc.out.models/toy"] == "def.dir"
    assert json.loads(tags["dvc.params.params.yaml"]) == {"classification.datasets.toy": {"epochs": 3}}
    assert "dvc.dep.stages/train.py" not in tags
    assert dvc_lineage(lock, "to") == {} and dvc_lineage(lock, "other") == {} and dvc_lineage(tmp_path / "none.lock", "x") == {}


def test_open_store_bounds_mlflows_http_retries_and_names_a_server_that_does_not_answer(monkeypatch):
    import socket
    import time

    import pytest

    from cvpipe.mlops.registry import MLFLOW_DEFAULTS, RegistryError, open_store

    for key in MLFLOW_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")  # a user's own setting wins
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(RegistryError, match=rf"tracking server at http://127\.0\.0\.1:{port} .* does not answer within 0\.5 s"):
        open_store(timeout=0.5)
    assert time.monotonic() - start < 5
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT

    assert (MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(), MLFLOW_HTTP_REQUEST_TIMEOUT.get()) == (2, 7)
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    assert MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get() is False  # no "Downloading artifacts" bars in a stage's output


def test_open_store_names_a_store_folder_it_cannot_create(tmp_path, monkeypatch):
    import pytest

    from cvpipe.mlops.registry import RegistryError, open_store

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(RegistryError, match="cannot create its folder"):
        open_store(tmp_path / "file" / "mlruns")
