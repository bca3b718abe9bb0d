"""flows.pipeline on a copy of the project with one small dataset: stages from dvc.yaml, a failed data
gate fails its stage with the gate's summary, later stages do not run, and the command says so in one
line; a stage filter runs only those stages."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.flows.conftest import copy_project, flow_env

pytestmark = pytest.mark.slow


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
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "Task run 'validate@fruits360' - Finished in state Failed" in proc.stdout + proc.stderr
    assert "Retrying" not in proc.stdout + proc.stderr  # a data problem is not retried
    assert not (project / "data/validated/fruits360").exists() and not (project / "models").exists()


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
    shutil.rmtree(project / "data/validated/fruits360")  # a missing output is rebuilt, not trusted to the cache
    third = flow(project, "--stage", "ingest", "--stage", "validate")
    assert "Task run 'validate@fruits360' - Finished in state Completed" in third.stdout + third.stderr
    assert (project / "data/validated/fruits360/manifest.parquet").is_file()
