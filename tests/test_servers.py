"""The shared MLflow for real: PostgreSQL (pgserver) and artifacts in S3 (moto's server on loopback,
reached with credentials from the environment), the register stage's promotion round trip through it,
and a secret planted in the environment found nowhere it could leak to."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from cvpipe.classification.fit import TrainConfig
from cvpipe.mlops.servers import free_port, s3_client, start_local_s3
from cvpipe.mlops.ui import answers, stop
from cvpipe.tasks import Compute
from stages import evaluate, train
from tests.conftest import REPO
from tests.cvpipe.classification.conftest import fruits_manifest  # noqa: F401 - fixture
from tests.registry_race import race

pytestmark = pytest.mark.slow

PARAMS = {"architecture": "littlevgg", "image_size": 32, "batch_size": 16, "lr": 0.003, "patience": 4, "seed": 0}


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "AWS_"))}
    return env | {"PYTHONPATH": str(REPO), "HOME": str(tmp_path / "home"), "MLFLOW_DISABLE_TELEMETRY": "true"} | extra


def test_register_and_promote_on_postgresql_with_artifacts_in_s3_and_no_secret_leaks(fruits_manifest, tmp_path):  # noqa: F811
    import mlflow
    from mlflow import MlflowClient

    secret = f"planted-{uuid.uuid4().hex}"
    s3, endpoint = start_local_s3(log=tmp_path / "s3.log")  # the team's S3, as far as the project knows
    env = clean_env(tmp_path, AWS_ACCESS_KEY_ID="AKIACVPIPETEST", AWS_SECRET_ACCESS_KEY=secret, MLFLOW_S3_ENDPOINT_URL=endpoint)
    bucket = s3_client(env=env)
    bucket.create_bucket(Bucket="team-models")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "server.out", "wb")  # noqa: SIM115
    server = subprocess.Popen([sys.executable, "-m", "flows.mlflow_server", "--port", str(port), "--data", str(tmp_path / "server"),
                               "--artifacts-destination", "s3://team-models/mlflow"],
                              cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240  # its address is printed once everything answers
        while b"export MLFLOW_TRACKING_URI" not in (tmp_path / "server.out").read_bytes() and server.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(1)
        assert server.poll() is None and answers(f"{uri}/health"), (tmp_path / "server.out").read_text()[-3000:]
        assert b"MLflow tracking server: " + uri.encode() in (tmp_path / "server.out").read_bytes()

        compute = Compute("auto", 2, tmp_path / "cache")
        worse = train.run("classification", fruits_manifest, tmp_path / "worse",
                          TrainConfig.from_params(PARAMS | {"epochs": 1, "lr": 0.0005}), compute)
        good = train.run("classification", fruits_manifest, tmp_path / "good", TrainConfig.from_params(PARAMS | {"epochs": 10}), compute)
        assert worse.epochs == 1 and good.epochs > 1
        for name in ("worse", "good"):
            evaluate.run("classification", tmp_path / name, fruits_manifest, tmp_path / f"eval_{name}", None, compute)

        def argv(name: str, out: str) -> list[str]:
            return ["--dataset", "fruits360", "--model-dir", str(tmp_path / name), "--eval-dir", str(tmp_path / f"eval_{name}"),
                    "--manifest-dir", str(fruits_manifest), "--params", str(REPO / "params.yaml"), "--out", str(tmp_path / out)]

        def register(name: str) -> dict:
            proc = subprocess.run([sys.executable, "-m", "stages.register", *argv(name, f"register_{name}.json")],
                                  cwd=tmp_path, env=env | {"MLFLOW_TRACKING_URI": uri}, capture_output=True, timeout=600, check=False)
            (tmp_path / f"register_{name}.log").write_bytes(proc.stdout + proc.stderr)
            assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()[-3000:]
            return json.loads((tmp_path / f"register_{name}.json").read_text())

        # two registers of the dataset at once: decided in turn through the server, the second against the first
        first, tie = race(argv("worse", "race_first.json"), argv("worse", "race_second.json"), "fruits360-classifier",
                          tmp_path, env | {"MLFLOW_TRACKING_URI": uri}, tmp_path)
        assert (first["version"], first["alias"]) == ("1", "champion")
        assert (tie["version"], tie["alias"], tie["champion_version"]) == ("2", "challenger", "1"), tie
        second = register("good")
        assert (second["version"], second["alias"], second["promoted"]) == ("3", "champion", True), second

        # the registry is the server's (PostgreSQL): the champion loads back through it, its files from the bucket
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri, registry_uri=uri)
        assert str(client.get_model_version_by_alias("fruits360-classifier", "champion").version) == "3"
        assert client.get_model_version("fruits360-classifier", "3").tags["promotion.replaces"] == "1"
        from cvpipe.classification.data import load_table
        from cvpipe.data.model_input import images_frame

        table = load_table(fruits_manifest, 0.2)
        test = table.indices("test")[::8]
        predicted = mlflow.pyfunc.load_model("models:/fruits360-classifier@champion").predict(images_frame(table.files[k] for k in test))
        truth = [table.classes.names[table.labels[k]] for k in test]
        assert sum(p == t for p, t in zip(predicted, truth, strict=True)) >= len(truth) - 1

        pages = bucket.get_paginator("list_objects_v2").paginate(Bucket="team-models")
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        assert all(k.startswith("mlflow/") for k in keys)
        names = {k.rsplit("/", 1)[-1] for k in keys}
        assert {"MLmodel", "model.pt", "confusion.png", "metrics.json"} <= names, sorted(names)
        assert not (tmp_path / "mlruns").exists()  # nothing fell back to a local store

        # the secret: in no MLflow param or tag, no object of the bucket, no log, no file under the test's folder
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert len(runs) == 3
        for run in runs:
            assert secret not in json.dumps([run.data.params, run.data.tags])
        for version in client.search_model_versions("name='fruits360-classifier'"):
            assert secret not in json.dumps(version.tags)
        for key in keys:
            assert secret.encode() not in bucket.get_object(Bucket="team-models", Key=key)["Body"].read(), key
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # as Ctrl-C: the tracking server and PostgreSQL stop with it
        server.wait(timeout=90)
        log.close()
        stop([s3])
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{uri}/health", timeout=3)
    pgdata = tmp_path / "server" / "pgdata"
    assert (pgdata / "PG_VERSION").is_file() and not (pgdata / "postmaster.pid").exists()  # kept, and cleanly stopped
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaks == []  # logs, params files, reports, the PostgreSQL data itself


def test_without_a_bucket_the_sandbox_starts_on_loopback_and_leaves_nothing_behind(tmp_path):
    import re

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    out = tmp_path / "server.out"
    with open(out, "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "flows.mlflow_server", "--port", str(port), "--data", str(tmp_path / "server")],
                                  cwd=tmp_path, env=clean_env(tmp_path), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while b"export MLFLOW_TRACKING_URI" not in out.read_bytes() and server.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        text = out.read_text()
        assert answers(f"{uri}/health"), text[-3000:]
        pgdata = Path(re.search(r"PostgreSQL (\S+) \(discarded at stop\)", text).group(1))
        endpoint = re.search(r"on the sandbox S3 at (http://127\.0\.0\.1:\d+) \(discarded at stop\)", text).group(1)
        assert (pgdata / "PG_VERSION").is_file() and answers(f"{endpoint}/moto-api/")
        with urllib.request.urlopen(urllib.request.Request(f"{uri}/api/2.0/mlflow/experiments/create", method="POST",
                                                           data=b'{"name": "sandbox"}', headers={"Content-Type": "application/json"}),
                                    timeout=30) as r:
            assert json.loads(r.read())["experiment_id"]  # the store answers: PostgreSQL behind it
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=90)
    assert server.returncode == 0
    assert not pgdata.exists() and not answers(f"{endpoint}/moto-api/") and not answers(f"{uri}/health")
