"""MLflow: where runs go, flattened params, lineage, the promotion gate, and reconciling what a killed
run left behind (task-independent).

Default store: SQLite at ``mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``;
``MLFLOW_TRACKING_URI`` points everything at a server (or another store) instead.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cvpipe.core.errors import CvpipeError
from cvpipe.mlops.evidence import Interval

DEFAULT_ROOT = Path("mlruns")
CHAMPION, CHALLENGER = "champion", "challenger"
ABANDONED = "abandoned"  # the decision of a version whose register run was interrupted
DECISION_TAG, REASON_TAG = "promotion.decision", "promotion.reason"
REPLACES_TAG = "promotion.replaces"  # the version that held the alias before this one took it ("" none)
PID_TAG, HOST_TAG = "cvpipe.pid", "cvpipe.host"  # who is making a run, to tell a live run from a killed one
RECONCILED_TAG = "cvpipe.reconciled"
DECIDED_AT_TAG, DECIDED_BY_TAG = "promotion.time", "promotion.by"  # when (UTC, ISO 8601) and by whom (user@host)
# MLflow's own HTTP defaults retry a dead server for minutes: a few tries, each bounded (a user's setting wins)
MLFLOW_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
               # a model's files copied to a temporary folder (logging, registering, loading) draw "Downloading artifacts"
               # bars that end in milliseconds, three to a register stage: noise in `make run`'s output
               "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
REACH_TIMEOUT_S = 3.0


class RegistryError(CvpipeError):
    """The MLflow store or tracking server cannot be used: names the store (its URI or file) and what is wrong."""


def open_store(root: Path = DEFAULT_ROOT, timeout: float = REACH_TIMEOUT_S, write: bool = True) -> str:
    """The tracking URI (:func:`tracking_uri`), checked before any work and set for MLflow: a tracking server must
    answer ``GET /health`` within ``timeout`` seconds (MLflow's HTTP retries and timeouts are bounded, and its
    artifact progress bars off, by :data:`MLFLOW_DEFAULTS`, unless the environment says otherwise), a SQLite store
    must be writable (the database file and its folder) unless ``write`` is
    False (a reader, such as serving a model)."""
    for key, value in MLFLOW_DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        uri = tracking_uri(root)
    except OSError as exc:
        raise RegistryError(f"the MLflow store {(root / 'mlflow.db').resolve()}: cannot create its folder {root}: "
                            f"{exc.strerror}") from None
    if uri.startswith(("http://", "https://")):
        _check_server(uri, timeout)
    elif write and uri.startswith("sqlite:///"):
        _check_sqlite(Path(uri.removeprefix("sqlite:///")))
    import mlflow

    mlflow.set_tracking_uri(uri)
    return uri


def _check_server(uri: str, timeout: float) -> None:
    """A tracking server that answers ``/health``, else a :class:`RegistryError` naming the URI."""
    import urllib.error
    import urllib.request

    health = f"{uri.rstrip('/')}/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout) as answer:
            answer.read(64)
    except urllib.error.HTTPError as exc:
        raise RegistryError(f"the MLflow tracking server at {uri} (MLFLOW_TRACKING_URI) answers {health} with HTTP "
                            f"{exc.code}: is it an MLflow server?") from None
    except (OSError, ValueError) as exc:  # refused, unreachable, timed out, a malformed URI
        why = getattr(exc, "reason", None) or exc
        raise RegistryError(f"the MLflow tracking server at {uri} (MLFLOW_TRACKING_URI) does not answer within "
                            f"{timeout:g} s ({why}); start it (make mlflow-server) or unset MLFLOW_TRACKING_URI "
                            "for the local store") from None


def _check_sqlite(db: Path) -> None:
    """A SQLite store MLflow can write: the database file (when it exists) and its folder, where SQLite writes
    its journal and MLflow the artifacts folder."""
    for path, what in ((db.parent, "its folder"), (db, "the database file"), (db.parent / "artifacts", "its artifacts folder")):
        if path.exists() and not os.access(path, os.W_OK | (os.X_OK if path.is_dir() else os.R_OK)):
            raise RegistryError(f"the MLflow store {db} is read-only: {what} {path} is not writable (nothing was "
                                "registered); make it writable or point MLFLOW_TRACKING_URI at another store")
    if db.is_file():
        import sqlite3
        from contextlib import closing

        try:
            with closing(sqlite3.connect(db, timeout=30)) as connection:  # a read-only file system, an immutable file
                connection.execute("BEGIN IMMEDIATE")
                connection.rollback()
        except sqlite3.Error as exc:
            raise RegistryError(f"the MLflow store {db} cannot be written: {exc} (nothing was registered)") from None


def tracking_uri(root: Path = DEFAULT_ROOT) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the project's SQLite store under ``root``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(root / 'mlflow.db').resolve()}"


def ensure_experiment(name: str, root: Path = DEFAULT_ROOT) -> str:
    """The experiment's id; a new one on a SQLite store keeps its artifacts in ``artifacts/`` beside the
    database file (MLflow's own default, ``./mlruns`` of whatever folder the command ran in, would
    scatter them); a tracking server decides for itself."""
    import mlflow

    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def flatten(params: dict, prefix: str = "") -> dict[str, Any]:
    """Nested params as ``a.b.c`` keys (MLflow params are flat)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def git_commit(cwd: Path = Path(".")) -> str:
    """HEAD's commit, with ``-dirty`` when tracked files differ; ``unknown`` outside a git checkout."""
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()

        commit, dirty = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def dvc_lineage(lock: Path, dataset: str, stage: str = "stages.train") -> dict[str, str]:
    """The DVC hashes the ``stage`` command of ``dataset`` ran with, from ``dvc.lock``: each data
    dependency's md5, each output's md5 and the params (found by command, whatever the stage's name)."""
    if not lock.is_file():
        return {}
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    entry = next((e for e in stages.values() if f"-m {stage} " in f"{e.get('cmd', '')} " and
                  f"--dataset {dataset} " in f"{e.get('cmd', '')} "), None)
    if entry is None:
        return {}
    tags = {f"dvc.dep.{d['path']}": d.get("md5", "") for d in entry.get("deps", []) if not d["path"].startswith(("cvpipe", "stages"))}
    tags |= {f"dvc.out.{o['path']}": o.get("md5", "") for o in entry.get("outs", [])}
    for file, values in (entry.get("params") or {}).items():
        tags[f"dvc.params.{file}"] = json.dumps(values, sort_keys=True)[:5000]
    return tags


def alias_version(client, name: str, alias: str) -> str | None:
    """The version of registered model ``name`` that holds ``alias``, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


@dataclass(frozen=True)
class ModelRef:
    """``NAME``, ``NAME@ALIAS`` or ``NAME/VERSION`` of a registered model."""

    name: str
    alias: str | None
    version: str | None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        if "@" in text:
            name, alias = text.split("@", 1)
            ref = cls(name, alias, None)
        elif "/" in text:
            name, version = text.rsplit("/", 1)
            if not version.isdigit():
                raise RegistryError(f"--model {text}: a version is a number (NAME/3), not {version!r}")
            ref = cls(name, None, version)
        else:
            ref = cls(text, CHAMPION, None)
        if not ref.name or (ref.alias is not None and not ref.alias):
            raise RegistryError(f"--model {text!r}: expected NAME, NAME@ALIAS or NAME/VERSION")
        return ref

    def resolve(self, client: Any, store: str) -> Any:
        """The model version it names, or a :class:`RegistryError` saying what the store holds instead."""
        from mlflow.exceptions import MlflowException

        try:
            model = client.get_registered_model(self.name)
        except MlflowException:
            names = sorted(m.name for m in client.search_registered_models())
            raise RegistryError(f"no registered model {self.name!r} in the MLflow store {store} (it holds: "
                                f"{', '.join(names) or 'none'})") from None
        if self.alias is not None:
            if self.alias not in model.aliases:
                held = ", ".join(f"@{a}" for a in sorted(model.aliases)) or "none"
                raise RegistryError(f"{self.name} has no alias @{self.alias} in the MLflow store {store} (aliases: {held})")
            return client.get_model_version_by_alias(self.name, self.alias)
        try:
            return client.get_model_version(self.name, self.version)
        except MlflowException:
            raise RegistryError(f"{self.name} has no version {self.version} in the MLflow store {store}") from None


@dataclass(frozen=True)
class Registered:
    """A registered model version as the registry holds it, and the task that made it (its ``task`` tag)."""

    ref: ModelRef
    version: Any  # mlflow.entities.model_registry.ModelVersion
    task: str

    @property
    def number(self) -> str:
        return str(self.version.version)

    def load(self, device: str = "auto") -> Any:
        """Its pyfunc's python model, loaded as anyone loads ``models:/NAME/VERSION``, then moved to ``device``
        (``auto``: CUDA when there is one, as the pyfunc itself chooses; ``cpu``; ``cuda:N``)."""
        import mlflow

        from cvpipe.tasks.training import pick_device

        target = pick_device(device)  # a device this machine lacks is one line, before the model is read
        model = mlflow.pyfunc.load_model(f"models:/{self.ref.name}/{self.number}").unwrap_python_model()
        if model.device != target:  # every task's pyfunc keeps its network in .model and its device in .device
            model.model.to(target)
            model.device = target
        return model


def find_registered(client: Any, store: str, text: str) -> Registered:
    """The version ``text`` (``NAME``, ``NAME@ALIAS``, ``NAME/VERSION``) names, or a :class:`RegistryError`."""
    ref = ModelRef.parse(text)
    version = ref.resolve(client, store)
    task = version.tags.get("task")
    if task is None:
        raise RegistryError(f"{ref.name} version {version.version} has no 'task' tag: it was not registered by "
                            "python -m stages.register, so nothing says which task reads it")
    return Registered(ref, version, task)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    difference: Interval | None = None  # new - champion on the same images, with its paired bootstrap interval
    changes: dict[str, float] = field(default_factory=dict)  # per group (class, image type): new - champion
    own: Interval | None = None  # the new version's own figure on the held-out images, with its bootstrap interval


def promotion_decision(new: float, new_per_group: dict[str, float], champion: float | None,
                       champion_per_group: dict[str, float] | None, min_delta: float, tolerance: float,
                       metric: str = "macro-F1", group: str = "class", difference: Interval | None = None,
                       own: Interval | None = None) -> Decision:
    """The gate, for any task, on evidence: ``difference`` is ``new - champion`` on the same held-out images with its
    paired bootstrap interval (:func:`cvpipe.mlops.evidence.paired_difference`). The new version is promoted only
    when the interval's lower bound is above ``min_delta`` (a tie, or a gain that resampling the images can undo,
    never replaces the champion) and no group's score (per class, per image type) drops by more than ``tolerance``.
    ``own``: the new version's figure with its bootstrap interval, which a first version's reason states."""
    if champion is None:
        return Decision(True, f"no champion yet; {metric} {own.text() if own else f'{new:.4f}'}", own=own)
    if difference is None:
        raise ValueError("a champion to beat needs the paired interval of the difference")
    changes = {g: float(v - champion_per_group[g]) for g, v in new_per_group.items() if g in (champion_per_group or {})}
    worst = min(changes.items(), key=lambda kv: kv[1], default=(None, 0.0))
    evidence = f"change {difference.text(signed=True)}"
    if not difference.low > min_delta:
        return Decision(False, f"{metric} {new:.4f} does not beat the champion's {champion:.4f} on evidence: {evidence}; "
                               f"the lower bound is not above min_delta {min_delta}", difference, changes, own)
    if -worst[1] > tolerance:
        return Decision(False, f"{metric} of {group} {worst[0]!r} drops by {-worst[1]:.4f} (tolerance {tolerance}) although "
                               f"{metric} rises from {champion:.4f} to {new:.4f} ({evidence})", difference, changes, own)
    return Decision(True, f"{metric} {new:.4f} beats the champion's {champion:.4f}: {evidence}, above min_delta {min_delta}; "
                          f"no {group} drops more than {tolerance}", difference, changes, own)


def undefined_decision(metric: str, split: str, reason: str) -> Decision:
    """The gate on a split that cannot define ``metric``: never promote, and say which split and why."""
    return Decision(False, f"{metric} is undefined on the {split} split ({reason}); a version is never promoted on it")


@dataclass(frozen=True)
class Reconciled:
    """What :func:`reconcile` did: runs ended as KILLED, versions marked abandoned, runs left RUNNING."""

    runs: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()
    live: tuple[str, ...] = ()  # RUNNING runs whose process may still be at work (another host, a live pid)


def process_tags() -> dict[str, str]:
    """This process's id and host, as tags for a run it starts."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def process_gone(tags: dict[str, str]) -> bool:
    """Whether the process that made a run is known to be gone: the run has no :func:`process_tags` (it
    predates them), or it was made on this host by a process id that no longer exists. A run made on
    another host counts as alive: nothing here can tell (a reused pid errs the same, safe, way)."""
    pid = tags.get(PID_TAG)
    if pid is None:
        return True
    if tags.get(HOST_TAG) != socket.gethostname():
        return False
    try:
        number = int(pid)
        if number <= 0:  # 0 and negative ids signal process groups, not a process
            return True
        os.kill(number, 0)
    except (ValueError, ProcessLookupError):
        return True
    except PermissionError:  # alive, and another user's
        return False
    return False


def reconcile(client, experiment_id: str, name: str) -> Reconciled:
    """Clean up after register runs of experiment ``experiment_id`` that were killed, so that the
    registered model ``name`` has no orphan. A version's decision counts only once its run FINISHED.

    1. A RUNNING run whose process is gone (:func:`process_gone`) is ended as KILLED and tagged
       ``cvpipe.reconciled=killed``; a RUNNING run whose process may be alive is left alone.
    2. A version without a decision, or with one whose run did not finish (KILLED, FAILED), is marked
       ``promotion.decision=abandoned`` (and ``cvpipe.reconciled=abandoned``), unless its run is one
       left alone in 1. Its decision is never applied: the next run registers the same model again and
       is gated as a clean run would be. An alias the gate gave it goes back to the version it replaced
       (``promotion.replaces``), or is removed when there was none.

    Each write comes before the one that marks it done, so a reconciliation that is itself killed is
    finished by the next one.
    """
    killed, live = [], []
    for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'"):
        if process_gone(run.data.tags):
            client.set_tag(run.info.run_id, RECONCILED_TAG, "killed")
            client.set_terminated(run.info.run_id, "KILLED")
            killed.append(run.info.run_id)
        else:
            live.append(run.info.run_id)
    unfinished = {r.info.run_id: r.info.status for r in client.search_runs([experiment_id], "attributes.status != 'FINISHED'")}
    versions = client.search_model_versions(f"name = '{name}'")
    holders = {alias: str(v) for alias, v in client.get_registered_model(name).aliases.items()} if versions else {}
    decided = {str(v.version) for v in versions if v.tags.get(DECISION_TAG) not in (None, ABANDONED)}
    abandoned = []
    for version in sorted(versions, key=lambda v: -int(v.version)):  # newest first: an alias walks back one step each
        decision = version.tags.get(DECISION_TAG)
        if decision == ABANDONED or version.run_id in live or (decision and version.run_id not in unfinished):
            continue
        number = str(version.version)
        for alias in (CHAMPION, CHALLENGER):
            if holders.get(alias) != number:
                continue
            previous = version.tags.get(REPLACES_TAG, "") if alias == decision else ""
            if previous in decided and previous not in abandoned:
                client.set_registered_model_alias(name, alias, previous)
                holders[alias] = previous
            else:
                client.delete_registered_model_alias(name, alias)
                holders.pop(alias)
        ended = f"its register run {version.run_id} ended {unfinished[version.run_id]}" if version.run_id in unfinished \
            else "no decision was recorded"
        client.set_model_version_tag(name, number, REASON_TAG, f"{ended} before the decision was complete; "
                                                               "a later run registers the model again")
        client.set_model_version_tag(name, number, RECONCILED_TAG, ABANDONED)
        client.set_model_version_tag(name, number, DECISION_TAG, ABANDONED)
        abandoned.append(number)
    return Reconciled(tuple(killed), tuple(abandoned), tuple(live))


def await_turn(client, experiment_id: str, name: str, version: str, wait_s: float, poll_s: float = 1.0,
               waiting: Callable[[str, str], None] | None = None) -> Reconciled:
    """Serialize the promotion decisions of registered model ``name``: return once no older version of it is
    still being decided, so that ``version`` is gated against the outcome of every older one (two registers of
    one dataset at once, as two scheduled runs or a user and a schedule can start them, never both take
    ``@champion`` from the same old champion). The order is the store's: version numbers are unique, whatever
    the store (SQLite, PostgreSQL, a tracking server), so no lock is needed beyond them.

    An older version is still being decided while its register run is RUNNING and its process may be alive
    (:func:`reconcile`, run at each poll, ends the runs of processes that are gone and abandons their versions);
    its decision counts once the run FINISHED, after the alias moved. ``waiting(version, run_id)`` is called
    once per version waited for. After ``wait_s`` seconds, a :class:`RegistryError` names the version, its run
    and its process."""
    deadline, announced = time.monotonic() + wait_s, set()
    while True:
        reconciled = reconcile(client, experiment_id, name)
        ahead = sorted((v for v in client.search_model_versions(f"name = '{name}'")
                        if int(v.version) < int(version) and v.run_id in reconciled.live), key=lambda v: int(v.version))
        if not ahead:
            return reconciled
        for older in ahead:
            if older.version not in announced and waiting is not None:
                waiting(str(older.version), older.run_id)
            announced.add(older.version)
        if time.monotonic() >= deadline:
            older = ahead[0]
            tags = client.get_run(older.run_id).data.tags
            raise RegistryError(
                f"{name}: version {older.version} (run {older.run_id}, process {tags.get(PID_TAG, '?')} on "
                f"{tags.get(HOST_TAG, '?')}) is still being decided after {wait_s:g} s (registry.wait_s), so version "
                f"{version} cannot be gated against its outcome; if that process is gone, a register on its host "
                "reconciles it")
        time.sleep(poll_s)


@dataclass(frozen=True)
class HistoryEntry:
    """One version's promotion decision, as :func:`promotion_history` reads it back from the registry."""

    version: str
    time: str  # UTC; the version's last update where no decision time was recorded
    by: str  # user@host of the register run
    decision: str  # champion, challenger, abandoned, or "undecided" (still being decided)
    replaces: str  # the version that held the alias before ("" none)
    reason: str

    def line(self) -> str:
        took = f"{self.decision} (was v{self.replaces})" if self.replaces else self.decision
        return f"v{self.version:<4} {self.time:<20} {self.by:<24} {took:<22} {self.reason}"


def promotion_history(client, name: str) -> list[HistoryEntry]:
    """Every version of registered model ``name`` in the order the gate decided them, with who decided, when, which
    version held the alias before and why: the registry's own record (each decision is written once, on its version,
    before the alias moves; :func:`reconcile` marks the abandoned ones), so every alias change is in it."""
    from mlflow.exceptions import MlflowException

    try:
        versions = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    except MlflowException as exc:
        raise RegistryError(f"cannot read the versions of {name!r}: {exc}") from None
    if not versions:
        raise RegistryError(f"no registered model {name!r} (or it has no version yet)")
    entries = []
    for v in versions:
        tags = v.tags
        when = tags.get(DECIDED_AT_TAG) or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(v.last_updated_timestamp / 1000))
        entries.append(HistoryEntry(str(v.version), when, tags.get(DECIDED_BY_TAG) or _run_author(client, v.run_id),
                                    tags.get(DECISION_TAG, "undecided"), tags.get(REPLACES_TAG, ""), tags.get(REASON_TAG, "")))
    return entries


def decided_by() -> str:
    """user@host of this process, for :data:`DECIDED_BY_TAG`."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's user)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _run_author(client, run_id: str | None) -> str:
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id) if run_id else None
    except MlflowException:
        run = None
    return "?" if run is None else f"{run.info.user_id or '?'}@{run.data.tags.get(HOST_TAG, '?')}"
