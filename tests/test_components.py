"""Smoke tests: each real component of the stack starts with the pinned versions.

An incompatible pin (say fastapi for the Prefect server) fails here, in CI, not for a user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def clean_env(tmp_path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PYTHONPATH=str(REPO), **extra)
    return env


def test_mlflow_sqlite_store_registers_and_serves_a_model(tmp_path, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input * 2

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("smoke")
    monkeypatch.chdir(tmp_path)  # artifacts land under ./mlruns
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    with mlflow.start_run():
        mlflow.log_metric("accuracy", 0.5)
        info = mlflow.pyfunc.log_model(name="model", python_model=Doubler(), input_example=frame,
                                       registered_model_name="smoke-model")
    client = MlflowClient()
    client.set_registered_model_alias("smoke-model", "champion", info.registered_model_version)
    model = mlflow.pyfunc.load_model("models:/smoke-model@champion")
    assert model.predict(frame)["x"].tolist() == [2.0, 4.0]
    mlflow.set_tracking_uri("")


def test_great_expectations_validates_a_manifest():
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas("manifests")
        .add_dataframe_asset("images")
        .add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="images"))
    suite.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(column="sha256"))
    suite.add_expectation(gx.expectations.ExpectColumnValuesToBeBetween(column="width", min_value=8))
    good = pd.DataFrame({"sha256": ["a", "b"], "width": [32, 64]})
    bad = pd.DataFrame({"sha256": ["a", None], "width": [32, 1]})
    assert batch.get_batch(batch_parameters={"dataframe": good}).validate(suite).success
    result = batch.get_batch(batch_parameters={"dataframe": bad}).validate(suite)
    assert not result.success
    assert sorted(r.expectation_config.type for r in result.results if not r.success) == [
        "expect_column_values_to_be_between", "expect_column_values_to_not_be_null"]


def test_ultralytics_model_built_from_yaml_runs_offline():
    import torch
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")  # the architecture ships with the package: no weights fetched
    model.model.eval()
    with torch.no_grad():
        out = model.model(torch.zeros(1, 3, 64, 64))
    preds = out[0] if isinstance(out, (list, tuple)) else out
    assert preds.shape[:2] == (1, 4 + 80)
    assert np.isfinite(preds.numpy()).all()


def test_make_ui_starts_both_servers_on_loopback_shows_the_deployments_and_stops_them(tmp_path):
    import urllib.request

    from cvpipe.mlops.servers import free_port

    mlflow_port, prefect_port = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "flows.ui", "--mlflow-port", str(mlflow_port), "--prefect-port", str(prefect_port),
                             "--params", str(REPO / "params.yaml")],
                            cwd=tmp_path, env=clean_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []  # the servers' own banners come first; the addresses are printed once both answer
        while not any(line.startswith("Prefect UI:") for line in lines) and proc.poll() is None and len(lines) < 2000:
            lines.append(proc.stdout.readline())
        assert f"MLflow UI:  http://127.0.0.1:{mlflow_port}\n" in lines, lines[-20:]
        assert lines[-1] == f"Prefect UI: http://127.0.0.1:{prefect_port}\n", lines[-20:]
        with urllib.request.urlopen(f"http://127.0.0.1:{mlflow_port}/health", timeout=10) as r:
            assert r.read() == b"OK"
        with urllib.request.urlopen(f"http://127.0.0.1:{prefect_port}/api/health", timeout=10) as r:
            assert r.read() == b"true"
        assert (tmp_path / "mlruns" / "mlflow.db").is_file()  # the project's default store
        # the scheduled deployments of params.yaml, with their crons, are in the Prefect UI's API
        request = urllib.request.Request(f"http://127.0.0.1:{prefect_port}/api/deployments/filter", data=b"{}",
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as r:
            deployments = {d["name"]: d for d in json.loads(r.read())}
        assert {"pipeline-nightly", "data-gate-hourly", "predict"} <= set(deployments), lines[-20:]
        assert deployments["predict"]["schedules"] == []  # run from the UI's form only
        assert [s["schedule"]["cron"] for s in deployments["pipeline-nightly"]["schedules"]] == ["0 3 * * *"]
        assert deployments["data-gate-hourly"]["parameters"]["stages"] == ["ingest", "validate"]
        assert "datasets" in deployments["pipeline-nightly"]["parameter_openapi_schema"]["properties"]  # the UI's form
        # the last results are there without a flow run of the user's: make ui published them (here, a checkout where
        # nothing ran yet: each dataset's cards say so)
        assert any(line.startswith("published ") and "fruits360" in line for line in lines), lines[-20:]
        request = urllib.request.Request(f"http://127.0.0.1:{prefect_port}/api/artifacts/filter", data=b"{}",
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as r:
            artifacts = {a["key"]: a for a in json.loads(r.read())}
        datasets = ("fruits360", "simpsons", "coco", "underground", "dsb2018")
        assert {f"{kind}-{d}" for d in datasets for kind in ("gate", "metrics", "model")} <= set(artifacts), sorted(artifacts)
    finally:
        proc.send_signal(__import__("signal").SIGTERM)  # as Ctrl-C: both servers stop with it
        proc.wait(timeout=60)
    for port in (mlflow_port, prefect_port):  # both servers are gone with it
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3)


def test_the_makefile_environment_turns_off_every_library_telemetry():
    """Each library's own check, with only what the Makefile exports (and no CI variables, which
    would turn telemetry off by themselves and hide a missing setting)."""
    import re
    import subprocess
    import sys

    from tests.conftest import REPO

    exports = dict(re.findall(r"^export (\w+) :?= (\S+)$", (REPO / "Makefile").read_text(), flags=re.M))
    exports.pop("PATH", None)
    script = """
import json
from mlflow.telemetry.utils import is_telemetry_disabled
from prefect._internal.analytics import is_telemetry_enabled
from prefect.settings import get_current_settings
print(json.dumps([is_telemetry_disabled(), is_telemetry_enabled(), get_current_settings().server.analytics_enabled]))
"""
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(REPO / ".cache" / "telemetry-home")}

    def checks(env: dict) -> list:
        out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=120)
        return json.loads(out.stdout.strip().splitlines()[-1])

    assert checks(bare)[:2] == [False, True]  # left alone, both would send
    assert checks({**bare, **exports}) == [True, False, False]
