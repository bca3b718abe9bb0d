"""flows.pipeline: a stage of OWN_PROCESS runs as its dvc.yaml command in a child process (its output logged, its
one-line error kept, an interruption passed on); and, on a copy of the project with one small dataset, a failed data
gate fails its stage with the gate's summary, later stages do not run, and the command says so in one line; a stage
filter runs only those stages. (That the flow trains the bytes `dvc repro` trains: tests/test_pipeline.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cvpipe.core.params import load_params
from cvpipe.core.pipeline import StageSpec
from tests.conftest import REPO
from tests.flows.conftest import copy_project, flow_env


def spec(cmd: str, outs: tuple[str, ...] = ()) -> StageSpec:
    return StageSpec("train@nosuch", "train", "nosuch", cmd, (), (), outs)


def test_the_stages_that_train_evaluate_and_register_run_in_a_child_process_the_others_here():
    from cvpipe.core.pipeline import resolve
    from flows.pipeline import OWN_PROCESS

    children = {s.group for s in resolve(REPO) if s.module in OWN_PROCESS}
    assert children == {"train", "evaluate", "register", "detection_train", "detection_evaluate", "detection_register",
                        "segmentation_train", "segmentation_evaluate", "segmentation_register"}


def test_a_child_stage_fails_with_the_one_line_of_the_in_process_call(monkeypatch):
    from flows.pipeline import command, run_child, run_here

    monkeypatch.chdir(REPO)
    stage = spec("python -m stages.train --dataset nosuch --data-dir data/validated/nosuch --out models/nosuch")
    assert command(stage, Path("params.yaml")) == [sys.executable, "-m", "stages.train", *stage.args]  # dvc.yaml's own
    lines: list[str] = []
    child = run_child(stage, Path("params.yaml"), lines.append)
    here = run_here(stage, Path("params.yaml"), load_params("params.yaml"))
    assert child.is_failed() and child.message == here.message
    assert child.message.startswith("train@nosuch: params.yaml: datasets: has no dataset 'nosuch'"), child.message
    assert lines == ["error: " + child.message.removeprefix("train@nosuch: ")]  # the child's output, logged


def test_a_child_stage_logs_its_output_returns_its_report_and_a_crash_is_an_error_to_retry(tmp_path):
    from flows.pipeline import run_child

    (tmp_path / "in.json").write_text('{"score": 1}')
    report = spec(f"python -m json.tool {tmp_path / 'in.json'} {tmp_path / 'report.json'}", (str(tmp_path / "report.json"),))
    assert run_child(report, Path("params.yaml"), print, root=tmp_path) == {"score": 1}
    lines: list[str] = []
    assert run_child(spec('python -m timeit -n 1 -r 1 "pass"'), Path("params.yaml"), lines.append, root=tmp_path) is None
    assert len(lines) == 1 and "1 loop" in lines[0]
    with pytest.raises(RuntimeError, match=r"train@nosuch: `python -m timeit .*` exited with 1"):  # a traceback: retried
        run_child(spec('python -m timeit -n 1 -r 1 "1/0"'), Path("params.yaml"), print, root=tmp_path)


def test_an_interruption_stops_the_child(tmp_path):
    from flows.pipeline import _CHILDREN, run_child

    pids: list[int] = []

    def interrupt(line: str) -> None:
        pids.append(int(line))
        raise KeyboardInterrupt

    sleeper = spec('python -m timeit -n 1 -r 1 -s "import os; print(os.getpid(), flush=True)" "import time; time.sleep(120)"')
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_child(sleeper, Path("params.yaml"), interrupt, root=tmp_path)
    assert time.monotonic() - start < 60 and pids and not _CHILDREN
    with pytest.raises(ProcessLookupError):  # terminated and reaped
        os.kill(pids[0], 0)


def test_a_child_on_a_dask_worker_gets_the_environment_without_what_the_nanny_set(monkeypatch):
    import distributed

    from flows.pipeline import child_env

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # not the nanny's value: the user's own
    assert child_env()["OMP_NUM_THREADS"] == "1"  # not on a worker: this environment as it is
    monkeypatch.setattr(distributed, "get_worker", object)
    env = child_env()
    assert "OMP_NUM_THREADS" not in env and env["MKL_NUM_THREADS"] == "3" and env["PATH"] == os.environ["PATH"]


@pytest.fixture
def project(tmp_path) -> Path:
    """The code, dvc.yaml and a params.yaml with fruits360 only, trained for two quick epochs."""
    dest = copy_project(tmp_path / "project", ["fruits360"])
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["classification"]["datasets"] = {"fruits360": params["classification"]["datasets"]["fruits360"] | {"epochs": 2}}
    params["train"]["cache_dir"] = str(tmp_path / "cache")
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def flow(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.pipeline", *args], cwd=project, env=flow_env(project),
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
def test_a_failed_gate_stops_its_dataset_with_the_summary_in_one_error_line(project):
    from cvpipe.sources.samples import generate

    generate("fruits360", project / "data/raw/fruits360")
    (project / "data/raw/fruits360/Test/Kiwi/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    proc = flow(project, "--dataset", "fruits360")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: validate@fruits360 failed; not run: train@fruits360, evaluate@fruits360, register@fruits360"], \
        proc.stdout[-3000:] + proc.stderr[-3000:]
    details = proc.stderr[proc.stderr.index(errors[0]):]  # then the gate's own summary, naming the file
    assert "validate@fruits360: validate fruits360: FAILED" in details and "Test/Kiwi/broken.jpg" in details
    assert "Traceback" not in proc.stdout + proc.stderr and "NoneType: None" not in proc.stdout + proc.stderr
    assert "Task run 'validate@fruits360' - Finished in state Failed" in proc.stdout + proc.stderr
    assert "Retrying" not in proc.stdout + proc.stderr  # a data problem is not retried
    assert not (project / "data/validated/fruits360").exists() and not (project / "models").exists()


READ_ARTIFACTS = """
import json, sys
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
with get_client(sync_client=True) as client:
    found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[sys.argv[1]])))
print(json.dumps([[a.type, a.data] for a in found]))
"""


@pytest.mark.slow
def test_stage_groups_run_alone_and_a_rerun_comes_from_the_cache(project):
    proc = flow(project, "--stage", "ingest", "--stage", "validate")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (project / "data/raw/fruits360").is_dir()  # the sample was generated
    assert json.loads((project / "reports/validate/fruits360.json").read_text())["passed"] == 1
    assert not (project / "models").exists()
    again = flow(project, "--stage", "ingest", "--stage", "validate")
    log = again.stdout + again.stderr
    assert "Task run 'ingest@fruits360' - Finished in state Cached" in log
    assert "Task run 'validate@fruits360' - Finished in state Cached" in log
    # each run, the cached one too, published the gate's table (read back from the project's Prefect database)
    read = subprocess.run([sys.executable, "-c", READ_ARTIFACTS, "gate-fruits360"], cwd=project, env=flow_env(project),
                          capture_output=True, text=True, timeout=300, check=True)
    runs = json.loads(read.stdout.strip().splitlines()[-1])
    assert len(runs) == 2 and all(kind == "table" for kind, _ in runs), runs
    assert all({row["check"]: row["passed"] for row in json.loads(data)}["images.decode"] for _, data in runs)
    shutil.rmtree(project / "data/validated/fruits360")  # a missing output is rebuilt, not trusted to the cache
    third = flow(project, "--stage", "ingest", "--stage", "validate")
    assert "Task run 'validate@fruits360' - Finished in state Completed" in third.stdout + third.stderr
    assert (project / "data/validated/fruits360/manifest.parquet").is_file()
