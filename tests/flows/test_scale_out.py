"""The pipeline flow beyond one process: a deployment of prefect.yaml on a process work pool run by a
worker started here, and the data stages on a local Dask cluster (prefect-dask) giving the same bytes
as the stages run one by one, as `dvc repro` runs them."""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from cvpipe.mlops.servers import free_port
from tests.conftest import REPO
from tests.flows.conftest import copy_project, flow_env

pytestmark = pytest.mark.slow


def test_prefect_yaml_is_written_from_the_schedules_of_params_yaml(monkeypatch):
    from cvpipe.core.params import load_params
    from flows.deploy import prefect_yaml

    monkeypatch.chdir(REPO)  # prefect.yaml names params.yaml relative to the repository root

    written = prefect_yaml(Path("params.yaml"), load_params("params.yaml"))
    assert (REPO / "prefect.yaml").read_text() == written, "run: python -m flows.deploy --write-prefect-yaml"
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert [d["name"] for d in config["deployments"]] == ["pipeline-nightly", "data-gate-hourly", "predict"]
    assert config["deployments"][2]["schedules"] == [] and config["deployments"][2]["entrypoint"] == "flows/predict.py:predict"
    assert {d["work_pool"]["name"] for d in config["deployments"]} == {"cvpipe"}
    assert config["deployments"][1]["parameters"]["stages"] == ["ingest", "validate"]


def test_a_worker_on_the_process_pool_runs_a_deployment_of_the_pipeline(tmp_path, monkeypatch):
    from cvpipe.mlops.ui import start_prefect, stop

    project = copy_project(tmp_path / "project", ["fruits360"])
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = flow_env(project, PREFECT_API_URL=api)
    monkeypatch.setenv("PREFECT_HOME", str(project / ".prefect"))
    server = start_prefect("127.0.0.1", port)
    prefect = str(Path(sys.executable).parent / "prefect")
    worker, log = None, open(tmp_path / "worker.log", "wb")  # noqa: SIM115

    def cli(*args: str) -> str:
        proc = subprocess.run([prefect, *args], cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc.stdout

    try:
        subprocess.run([sys.executable, "-m", "flows.deploy", "--write-prefect-yaml"], cwd=project, env=env, check=True, timeout=120)
        cli("work-pool", "create", "cvpipe", "--type", "process")
        cli("--no-prompt", "deploy", "--all")
        out = cli("deployment", "run", "pipeline/data-gate-hourly")
        run_id = re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)
        # a worker started elsewhere: it runs the flow in the checkout CVPIPE_PROJECT_DIR names
        (tmp_path / "elsewhere").mkdir()
        worker = subprocess.Popen([prefect, "worker", "start", "--pool", "cvpipe", "--type", "process"],
                                  cwd=tmp_path / "elsewhere", env=env | {"CVPIPE_PROJECT_DIR": str(project)},
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline, state = time.monotonic() + 420, None
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{api}/flow_runs/{run_id}", timeout=10) as r:
                state = json.loads(r.read())["state"]
            if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            time.sleep(2)
        assert state and state["type"] == "COMPLETED", (state, (tmp_path / "worker.log").read_text()[-4000:])
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
        log.close()
        stop([server])
    worker_log = (tmp_path / "worker.log").read_text()
    assert run_id in worker_log and "Task run 'validate@fruits360' - Finished in state Completed" in worker_log, worker_log[-3000:]
    assert json.loads((project / "reports/validate/fruits360.json").read_text())["passed"] == 1  # written in the project
    assert not (project / "models").exists()  # the deployment's parameters: ingest and the data gate only


GROUPS = ("ingest", "validate", "convert_yolo", "convert_tfrecord")


def files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def test_data_stages_on_a_local_dask_cluster_match_the_stages_run_one_by_one(tmp_path):
    from cvpipe.core.pipeline import in_order, resolve
    from cvpipe.sources.samples import generate

    one, dask = copy_project(tmp_path / "one", ["underground"]), copy_project(tmp_path / "dask", ["underground"])
    generate("voc", one / "data/raw/underground")
    shutil.copytree(one / "data/raw", dask / "data/raw")
    params = yaml.safe_load((dask / "params.yaml").read_text())
    params["dask"]["min_items"] = 0  # each stage's per-image work goes to the flow's cluster as well
    (dask / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # one by one: dvc.yaml's commands in its order, each in its own process (what `dvc repro` runs)
    for spec in in_order(resolve(one)):
        if spec.group in GROUPS and spec.item == "underground":
            subprocess.run([sys.executable, *spec.argv[1:]], cwd=one, env=flow_env(one), check=True, capture_output=True, timeout=600)
    stages = [arg for group in GROUPS for arg in ("--stage", group)]
    proc = subprocess.run([sys.executable, "-m", "flows.pipeline", "--dask", "local", *stages], cwd=dask, env=flow_env(dask),
                          capture_output=True, text=True, timeout=900, check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "LocalCluster" in log  # prefect-dask's task runner ran the stages
    assert "Receive client connection: Client-worker-" in log, log[-4000:]  # a stage sent its per-image work to the same cluster
    assert "Task run 'convert_tfrecord@underground' - Finished in state Completed" in log
    outputs = ["data/manifests/underground", "data/validated/underground", "data/yolo/underground", "data/tfrecord/underground"]
    for out in outputs:
        a, b = files(one / out), files(dask / out)
        assert a and list(a) == list(b), out
        different = [name for name in a if not filecmp.cmp(a[name], b[name], shallow=False)]
        assert different == [], (out, different)
    assert (one / "reports/validate/underground.json").read_bytes() == (dask / "reports/validate/underground.json").read_bytes()
