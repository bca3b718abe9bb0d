"""A register run killed midway is reconciled by the next one: no run stays RUNNING, every version of
the model has a decision, and the rerun's outcome is a clean run's.

The kill is deterministic where it can be: the stage runs in a child process whose own copy of a
seam (the task's ``log_model``, the client's ``set_registered_model_alias``) SIGKILLs the process
right after the real call; one test sends a real SIGKILL from outside instead. The report of a rerun
equals a clean run's except ``version``: the killed attempt's version keeps its number (abandoned),
so the rerun's is one higher.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from cvpipe.classification.fit import TrainConfig
from cvpipe.mlops.registry import RegistryError, await_turn, reconcile
from cvpipe.tasks import Compute
from stages import evaluate, register, train
from tests.conftest import REPO
from tests.cvpipe.classification.conftest import fruits_manifest  # noqa: F401 - fixture
from tests.registry_race import race

DATASET, MODEL = "fruits360", "fruits360-classifier"
TINY = {"architecture": "littlevgg", "image_size": 32, "epochs": 1, "batch_size": 16, "lr": 0.003, "patience": 4, "seed": 0,
        "augment": {"rotation": 0, "width_shift": 0.0, "height_shift": 0.0, "horizontal_flip": False}}
DIFFERS = {"version"}  # the only report field a rerun after a kill may change

# The stage in a child process that SIGKILLs itself right after one real call: "version" (the task
# registered the model version) or "alias" (the gate moved its alias).
KILLED_AFTER = """
import os, signal, sys
from mlflow import MlflowClient
from stages import register

def die_after(owner, attribute):
    real = getattr(owner, attribute)
    def dying(*args, **kwargs):
        real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    setattr(owner, attribute, dying)

point, argv = sys.argv[1], sys.argv[2:]
if point == "version":
    get_task = register.get_task
    def get_dying_task(name):
        task = get_task(name)
        die_after(task, "log_model")
        return task
    register.get_task = get_dying_task
else:
    die_after(MlflowClient, "set_registered_model_alias")
sys.exit(register.main(argv))
"""


@pytest.fixture(scope="module")
def trained(fruits_manifest, tmp_path_factory) -> tuple[Path, Path, Path]:  # noqa: F811
    """(manifest, model, evaluation) folders of a one-epoch model: the gate's outcome does not need a good one."""
    root = tmp_path_factory.mktemp("trained")
    compute = Compute("auto", 2, root / "cache")
    train.run("classification", fruits_manifest, root / "model", TrainConfig.from_params(TINY), compute)
    evaluate.run("classification", root / "model", fruits_manifest, root / "eval", None, compute)
    return fruits_manifest, root / "model", root / "eval"


def open_store(monkeypatch: pytest.MonkeyPatch, root: Path) -> MlflowClient:
    """A fresh SQLite store under ``root`` with the dataset's experiment (artifacts under ``root`` too)."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment(DATASET, artifact_location=(root / "artifacts").as_uri())
    return MlflowClient()


@pytest.fixture
def store(tmp_path, monkeypatch) -> MlflowClient:
    return open_store(monkeypatch, tmp_path)


def argv(trained: tuple[Path, Path, Path], out: Path) -> list[str]:
    manifest, model, evaluation = trained
    return ["--dataset", DATASET, "--model-dir", str(model), "--eval-dir", str(evaluation), "--manifest-dir", str(manifest),
            "--out", str(out), "--params", str(REPO / "params.yaml")]


def register_in_process(trained, out: Path) -> dict:
    assert register.main(argv(trained, out)) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def clean(trained, tmp_path_factory) -> tuple[dict, dict]:
    """The reports of two clean registrations of the model in a fresh store: @champion, then @challenger (a tie)."""
    root = tmp_path_factory.mktemp("clean")
    with pytest.MonkeyPatch.context() as monkeypatch:
        open_store(monkeypatch, root)
        first = register_in_process(trained, root / "first.json")
        second = register_in_process(trained, root / "second.json")
    assert (first["alias"], second["alias"]) == ("champion", "challenger")
    return first, second


def kill_after(point: str, trained, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", KILLED_AFTER, point, *argv(trained, tmp_path / "killed.json")],
                          check=False, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (tmp_path / "killed.json").exists()


def same_outcome(rerun: dict, clean: dict) -> bool:
    return {k: v for k, v in rerun.items() if k not in DIFFERS} == {k: v for k, v in clean.items() if k not in DIFFERS}


def assert_no_orphan(client: MlflowClient) -> dict[str, str]:
    """No run of the experiment is RUNNING and every version has a decision; the decisions, by version."""
    experiment = client.get_experiment_by_name(DATASET).experiment_id
    assert [r.info.status for r in client.search_runs([experiment]) if r.info.status == "RUNNING"] == []
    decisions = {str(v.version): v.tags.get("promotion.decision") for v in client.search_model_versions(f"name = '{MODEL}'")}
    assert set(decisions.values()) <= {"champion", "challenger", "abandoned"}, decisions
    return decisions


def alias(client: MlflowClient, name: str) -> str | None:
    held = client.get_registered_model(MODEL).aliases.get(name)
    return None if held is None else str(held)


def test_a_first_registration_killed_after_its_version_reruns_as_a_clean_one(trained, clean, store, tmp_path, caplog):
    kill_after("version", trained, tmp_path)
    killed = store.search_runs([store.get_experiment_by_name(DATASET).experiment_id])
    assert [r.info.status for r in killed] == ["RUNNING"] and store.get_registered_model(MODEL).aliases == {}

    with caplog.at_level(logging.INFO, logger="stages.register"):
        rerun = register_in_process(trained, tmp_path / "rerun.json")
    assert f"register: reconciled 1 interrupted run and 1 undecided version of {MODEL}" in caplog.text
    assert same_outcome(rerun, clean[0]) and rerun["alias"] == "champion" and rerun["version"] == "2"
    assert assert_no_orphan(store) == {"1": "abandoned", "2": "champion"}
    assert alias(store, "champion") == "2"
    run = store.get_run(killed[0].info.run_id)
    assert run.info.status == "KILLED" and run.data.tags["cvpipe.reconciled"] == "killed"
    assert "ended KILLED before the decision was complete" in store.get_model_version(MODEL, "1").tags["promotion.reason"]


def test_a_run_killed_after_moving_its_alias_hands_it_back(trained, clean, store, tmp_path, caplog):
    register_in_process(trained, tmp_path / "first.json")
    kill_after("alias", trained, tmp_path)  # the tie made version 2 @challenger, then the process died
    assert alias(store, "challenger") == "2"

    with caplog.at_level(logging.INFO, logger="stages.register"):
        rerun = register_in_process(trained, tmp_path / "rerun.json")
    assert "reconciled 1 interrupted run and 1 undecided version" in caplog.text
    assert same_outcome(rerun, clean[1]) and rerun["version"] == "3"
    assert assert_no_orphan(store) == {"1": "champion", "2": "abandoned", "3": "challenger"}
    assert (alias(store, "champion"), alias(store, "challenger")) == ("1", "3")


def test_a_real_sigkill_while_registering_is_reconciled(trained, clean, store, tmp_path):
    experiment = store.get_experiment_by_name(DATASET).experiment_id
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "stages.register", *argv(trained, tmp_path / "killed.json")],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not store.search_runs([experiment], "attributes.status = 'RUNNING'"):
                assert proc.poll() is None, (tmp_path / "killed.log").read_text()
                assert time.monotonic() < deadline, "the stage never started its MLflow run"
                time.sleep(0.05)
        finally:
            proc.kill()  # SIGKILL
            proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "killed.json").exists()

    rerun = register_in_process(trained, tmp_path / "rerun.json")
    decisions = assert_no_orphan(store)
    # the kill may land before or after the version was created: abandoned, or never made
    assert rerun["version"] == str(len(decisions)) and same_outcome(rerun, clean[0])
    assert alias(store, "champion") == rerun["version"]
    assert [r.info.status for r in store.search_runs([experiment])].count("KILLED") == 1


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: the id names no process
    return proc.pid


def test_reconcile_ends_only_runs_whose_process_is_gone_and_walks_aliases_back(store):
    experiment = store.get_experiment_by_name(DATASET).experiment_id
    here = socket.gethostname()
    store.create_registered_model(MODEL)

    def run(status: str, **tags: str) -> str:
        run_id = store.create_run(experiment, tags=tags).info.run_id
        if status != "RUNNING":
            store.set_terminated(run_id, status)
        return run_id

    def version(run_id: str | None, decision: str | None = None, replaces: str = "", holds: str | None = None) -> str:
        number = str(store.create_model_version(MODEL, source="file:///nowhere", run_id=run_id).version)
        if decision:
            store.set_model_version_tag(MODEL, number, "promotion.replaces", replaces)
            store.set_model_version_tag(MODEL, number, "promotion.decision", decision)
        if holds:
            store.set_registered_model_alias(MODEL, holds, number)
        return number

    version(run("FINISHED"), "champion", holds="champion")  # 1
    version(run("FINISHED"), "challenger", holds="challenger")  # 2
    killed = run("RUNNING", **{"cvpipe.pid": str(dead_pid()), "cvpipe.host": here})
    version(killed, "challenger", replaces="2", holds="challenger")  # 3: killed after moving the alias
    older = run("RUNNING")  # no process tags: made before they existed
    version(older)  # 4: killed before any decision
    live = run("RUNNING", **{"cvpipe.pid": str(os.getpid()), "cvpipe.host": here})
    version(live)  # 5: another process is deciding it right now
    elsewhere = run("RUNNING", **{"cvpipe.pid": "1", "cvpipe.host": f"not-{here}"})
    version(run("FAILED"), "champion", replaces="1", holds="champion")  # 6: failed after moving the alias
    version(None)  # 7: no run at all

    done = reconcile(store, experiment, MODEL)
    assert set(done.runs) == {killed, older} and set(done.live) == {live, elsewhere}
    assert done.versions == ("7", "6", "4", "3")
    assert {r.info.run_id: r.info.status for r in store.search_runs([experiment], "attributes.status = 'RUNNING'")} == \
        {live: "RUNNING", elsewhere: "RUNNING"}
    decisions = {str(v.version): v.tags.get("promotion.decision") for v in store.search_model_versions(f"name = '{MODEL}'")}
    assert decisions == {"1": "champion", "2": "challenger", "3": "abandoned", "4": "abandoned", "5": None,
                         "6": "abandoned", "7": "abandoned"}
    assert store.get_registered_model(MODEL).aliases == {"champion": 1, "challenger": 2}
    again = reconcile(store, experiment, MODEL)  # nothing left to do
    assert (again.runs, again.versions) == ((), ()) and set(again.live) == {live, elsewhere}


def test_two_registers_at_once_decide_in_turn_the_second_against_the_firsts_outcome(trained, store, tmp_path):
    """Two scheduled runs (or a user and a schedule) registering one dataset against one store: the second
    waits for the first's decision and is gated against it; never two champions from one old champion."""
    env = os.environ | {"MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    first, second = race(argv(trained, tmp_path / "first.json"), argv(trained, tmp_path / "second.json"), MODEL, REPO, env, tmp_path)
    assert (first["version"], first["alias"], first["champion_version"]) == ("1", "champion", None), first
    # the same model again: a tie with the first's version, which it was scored against
    assert (second["version"], second["alias"], second["champion_version"]) == ("2", "challenger", "1"), second
    assert second["champion_score"] == first["score"]
    assert "register: waiting for version 1 of fruits360-classifier" in (tmp_path / "second.log").read_text()
    assert assert_no_orphan(store) == {"1": "champion", "2": "challenger"}
    assert (alias(store, "champion"), alias(store, "challenger")) == ("1", "2")


def test_a_turn_not_given_within_registry_wait_s_is_one_line_naming_the_version_its_run_and_process(store):
    experiment = store.get_experiment_by_name(DATASET).experiment_id
    store.create_registered_model(MODEL)
    here = socket.gethostname()
    deciding = store.create_run(experiment, tags={"cvpipe.pid": str(os.getpid()), "cvpipe.host": here}).info.run_id
    store.create_model_version(MODEL, source="file:///nowhere", run_id=deciding)  # 1: another process deciding it
    gone = store.create_run(experiment, tags={"cvpipe.pid": str(dead_pid()), "cvpipe.host": here}).info.run_id
    store.create_model_version(MODEL, source="file:///nowhere", run_id=gone)  # 2: its process was killed
    mine = store.create_run(experiment, tags={"cvpipe.pid": str(os.getpid()), "cvpipe.host": here}).info.run_id
    store.create_model_version(MODEL, source="file:///nowhere", run_id=mine)  # 3: this register's

    seen: list[tuple[str, str]] = []
    with pytest.raises(RegistryError) as caught:
        await_turn(store, experiment, MODEL, "3", wait_s=0.3, poll_s=0.1, waiting=lambda *v: seen.append(v))
    assert str(caught.value) == (
        f"{MODEL}: version 1 (run {deciding}, process {os.getpid()} on {here}) is still being decided after 0.3 s "
        "(registry.wait_s), so version 3 cannot be gated against its outcome; if that process is gone, a register "
        "on its host reconciles it")
    assert seen == [("1", deciding)]  # announced once, however many polls
    assert store.get_model_version(MODEL, "2").tags["promotion.decision"] == "abandoned"  # not waited for
    store.set_terminated(deciding, "FINISHED")  # it decided (without a decision tag: abandoned by the next poll)
    turn = await_turn(store, experiment, MODEL, "3", wait_s=0.3, poll_s=0.1)
    assert turn.versions == ("1",) and store.get_model_version(MODEL, "3").tags.get("promotion.decision") is None
