"""``python -m cvpipe.mlops.serve NAME`` (``make serve-model``): a registered classifier's ``@champion`` served by
``mlflow models serve`` on loopback answers base64 images with what the model predicts in process; a
missing model or alias is one line; ``--request`` prints the body to post."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from cvpipe.data.model_input import COLUMN, images_frame, request_body
from cvpipe.mlops import serve
from cvpipe.mlops.servers import free_port
from tests.conftest import REPO
from tests.cvpipe.classification.conftest import fruits_manifest  # noqa: F401 - fixture


@pytest.fixture
def empty_store(tmp_path, monkeypatch) -> str:
    """A new SQLite store; MLflow's process-wide tracking URI, which ``serve.main`` sets, put back afterwards."""
    from mlflow.tracking._tracking_service import utils

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setattr(utils, "_tracking_uri", utils._tracking_uri)
    return uri


def test_a_missing_model_or_alias_is_one_line_naming_what_there_is(empty_store, capsys):
    from mlflow import MlflowClient

    assert serve.main(["fruits360-classifier"]) == 1
    err = capsys.readouterr().err  # after MLflow's lines about creating the new store's tables
    assert err.endswith(f"\nerror: no registered model 'fruits360-classifier' in {empty_store}; "
                        "registered: none (run the pipeline first)\n")
    MlflowClient(empty_store, registry_uri=empty_store).create_registered_model("fruits360-classifier")
    assert serve.main(["fruits360-classifier"]) == 1
    assert capsys.readouterr().err == (f"error: registered model 'fruits360-classifier' has no @champion version in {empty_store}; "
                                       "its aliases: none\n")
    assert serve.main(["fruits360-clasifier", "--alias", "challenger"]) == 1
    assert "registered: fruits360-classifier\n" in capsys.readouterr().err


def test_the_command_serves_offline_on_loopback_unless_told_otherwise():
    args = serve.get_args_parser().parse_args(["coco-detector"])
    assert (args.host, args.port, args.alias) == ("127.0.0.1", 5001, "champion")
    command = serve.serve_command("models:/coco-detector@champion", args.host, args.port)
    assert command[1:] == ["-m", "mlflow", "models", "serve", "-m", "models:/coco-detector@champion", "--env-manager", "local",
                           "--host", "127.0.0.1", "--port", "5001"]
    assert serve.serve_env("sqlite:////x/mlflow.db")["MLFLOW_TRACKING_URI"] == "sqlite:////x/mlflow.db"


def test_request_prints_the_body_to_post(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (6, 4), (0, 90, 200)).save(tmp_path / "a.png")
    assert serve.main(["--request", str(tmp_path / "a.png")]) == 0
    assert capsys.readouterr().out == request_body([tmp_path / "a.png"]) + "\n"
    assert serve.main(["--request", str(tmp_path / "none.png")]) == 1
    assert capsys.readouterr().err == f"error: no such image file: {tmp_path / 'none.png'}\n"
    assert serve.main(["x", "--request", str(tmp_path / "a.png")]) == 1
    assert serve.main([]) == 1
    assert "name the registered model to serve" in capsys.readouterr().err


def post(url: str, body: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def served(fruits_manifest, tmp_path, monkeypatch):  # noqa: F811
    """A classifier trained for a few epochs, registered as fruits-classifier@champion in a temporary store,
    served by ``python -m cvpipe.mlops.serve`` on a free loopback port; the whole process group stopped after."""
    import mlflow

    from cvpipe.classification.fit import TrainConfig
    from cvpipe.tasks import Compute
    from stages import evaluate, register, train

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    params = {"architecture": "littlevgg", "image_size": 32, "epochs": 4, "batch_size": 16, "lr": 0.003, "patience": 4, "seed": 0}
    compute = Compute("auto", 2, None)
    train.run("classification", fruits_manifest, tmp_path / "model", TrainConfig.from_params(params), compute)
    evaluate.run("classification", tmp_path / "model", fruits_manifest, tmp_path / "eval", None, compute)
    gate = register.Gate(min_delta=0.0, tolerance=0.05, cpu_threads=2)
    assert register.run("fruits", "classification", tmp_path / "model", tmp_path / "eval", fruits_manifest, gate).alias == "champion"

    port = free_port()
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {
        "MLFLOW_TRACKING_URI": uri, "TMPDIR": str(tmp_path / "tmp")}  # the model's downloaded copy lands in tmp_path
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "cvpipe.mlops.serve", "fruits-classifier", "--port", str(port)], cwd=REPO, env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not come up (exit {proc.poll()}):\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", tmp_path / "server.log"
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group is gone already if the server failed to start
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for _ in range(40):  # uvicorn, the group's last member, may outlive mlflow's CLI by a moment
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.25)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("processes of the server's group were still running after SIGTERM")


@pytest.mark.slow
def test_the_served_champion_answers_a_posted_image_with_the_registered_models_prediction(served, fruits_manifest):  # noqa: F811
    import mlflow.pyfunc

    from cvpipe.classification.data import load_table

    url, log = served
    table = load_table(fruits_manifest, 0.2)
    files = [table.files[k] for k in table.indices("test")[::4]]
    expected = mlflow.pyfunc.load_model("models:/fruits-classifier@champion").predict(images_frame(files))
    status, answer = post(f"{url}/invocations", request_body(files))
    assert status == 200 and answer == {"predictions": expected}, answer
    assert len(set(expected)) > 1  # a model that tells the fruits apart, not one answer for everything
    status, answer = post(f"{url}/invocations", request_body([files[0], b"not an image"]))
    assert status == 400 and "image 1: cannot decode it as an image file" in answer["message"], answer
    status, answer = post(f"{url}/invocations", json.dumps({"inputs": {COLUMN: ["aGVsbG8="]}}))
    assert status == 400 and "image 0:" in answer["message"]
    text = log.read_text()
    assert "serving models:/fruits-classifier@champion (version 1) on http://127.0.0.1:" in text
    assert "exec uvicorn --host 127.0.0.1 --port" in text  # loopback only
