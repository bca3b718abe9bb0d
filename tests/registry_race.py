"""Two ``python -m stages.register`` processes of one dataset against one store, forced to overlap where
the promotion decision can race: the first has read the champion and is scoring its new version when the
second registers its own. Serialized, the second is gated against the first's outcome; unserialized,
both see the same old champion and both are promoted. tests/stages/test_register_reconcile.py runs it
on SQLite, tests/test_servers.py on the PostgreSQL server of ``make mlflow-server``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

# The stage whose first score (its new version, after it read the champion) waits until the model has a
# second version: the other register process's, made while this one decides.
SCORES_AFTER_THE_NEXT_VERSION = """
import sys, time
from mlflow import MlflowClient
from stages import register

model, argv = sys.argv[1], sys.argv[2:]
get_task = register.get_task

def get_waiting_task(name):
    task = get_task(name)
    real, waited = task.score, []
    def score(*args, **kwargs):
        if not waited:
            waited.append(True)
            client, deadline = MlflowClient(), time.monotonic() + 300
            while len(client.search_model_versions(f"name = '{model}'")) < 2:
                if time.monotonic() > deadline:
                    sys.exit("the other register process never made its version")
                time.sleep(0.2)
        return real(*args, **kwargs)
    task.score = score
    return task

register.get_task = get_waiting_task
sys.exit(register.main(argv))
"""


def race(first: list[str], second: list[str], model: str, cwd: Path, env: dict[str, str], logs: Path) -> tuple[dict, dict]:
    """The reports of two overlapping registrations (``first`` and ``second``: register's arguments, each with
    its own ``--out``), the second started once the first has made its version."""
    from mlflow import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
    outs = [Path(argv[argv.index("--out") + 1]) for argv in (first, second)]
    procs = []
    with open(logs / "first.log", "wb") as first_log, open(logs / "second.log", "wb") as second_log:
        procs.append(subprocess.Popen([sys.executable, "-c", SCORES_AFTER_THE_NEXT_VERSION, model, *first], cwd=cwd, env=env,
                                      stdout=first_log, stderr=subprocess.STDOUT))
        try:
            deadline = time.monotonic() + 300
            while not _versions(client, model):
                assert procs[0].poll() is None, (logs / "first.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the first register process never made its version"
                time.sleep(0.2)
            procs.append(subprocess.Popen([sys.executable, "-m", "stages.register", *second], cwd=cwd, env=env,
                                          stdout=second_log, stderr=subprocess.STDOUT))
            for proc in procs:
                proc.wait(timeout=600)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    for proc, name in zip(procs, ("first", "second"), strict=True):
        assert proc.returncode == 0, (logs / f"{name}.log").read_text()[-3000:]
    return json.loads(outs[0].read_text()), json.loads(outs[1].read_text())


def _versions(client, model: str) -> list:
    from mlflow.exceptions import MlflowException

    try:
        return client.search_model_versions(f"name = '{model}'")
    except MlflowException:  # the store's tables may not exist yet
        return []
