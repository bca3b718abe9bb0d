"""MLflow: where runs go, flattened params, lineage, and the promotion gate (task-independent).

Default store: SQLite at ``mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``;
``MLFLOW_TRACKING_URI`` points everything at a server (or another store) instead.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_ROOT = Path("mlruns")
CHAMPION, CHALLENGER = "champion", "challenger"


def tracking_uri(root: Path = DEFAULT_ROOT) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the project's SQLite store under ``root``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(root / 'mlflow.db').resolve()}"


def ensure_experiment(name: str, root: Path = DEFAULT_ROOT) -> str:
    """The experiment's id; a new one keeps its artifacts under ``root/artifacts`` on a local store."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(root))
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        location = (root / "artifacts").resolve().as_uri()
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
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
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
class Decision:
    promote: bool
    reason: str


def promotion_decision(new: float, new_per_group: dict[str, float], champion: float | None,
                       champion_per_group: dict[str, float] | None, margin: float, tolerance: float,
                       metric: str = "macro-F1", group: str = "class") -> Decision:
    """The gate, for any task: beat the champion's ``metric`` by more than ``margin`` with no group's
    score (per class, per image type) dropping more than ``tolerance``. A tie never replaces the champion."""
    if champion is None:
        return Decision(True, f"no champion yet; {metric} {new:.4f}")
    drops = {g: champion_per_group[g] - v for g, v in new_per_group.items() if g in (champion_per_group or {})}
    worst = max(drops.items(), key=lambda kv: kv[1], default=(None, 0.0))
    if not new > champion + margin:
        return Decision(False, f"{metric} {new:.4f} does not beat the champion's {champion:.4f} by more than the margin {margin}")
    if worst[1] > tolerance:
        return Decision(False, f"{metric} of {group} {worst[0]!r} drops by {worst[1]:.4f} (tolerance {tolerance}) although "
                               f"{metric} rises from {champion:.4f} to {new:.4f}")
    return Decision(True, f"{metric} {new:.4f} beats the champion's {champion:.4f} by more than {margin}; "
                          f"no {group} drops more than {tolerance}")
