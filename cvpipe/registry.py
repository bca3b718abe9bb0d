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


def dvc_lineage(lock: Path, stage: str) -> dict[str, str]:
    """The DVC hashes ``stage`` was run with, from ``dvc.lock``: each dependency's md5 and its params."""
    if not lock.is_file():
        return {}
    entry = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {}).get(stage)
    if entry is None:
        return {}
    tags = {f"dvc.dep.{d['path']}": d.get("md5", "") for d in entry.get("deps", []) if not d["path"].endswith(".py")}
    tags |= {f"dvc.out.{o['path']}": o.get("md5", "") for o in entry.get("outs", [])}
    for file, values in (entry.get("params") or {}).items():
        tags[f"dvc.params.{file}"] = json.dumps(values, sort_keys=True)[:5000]
    return tags


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def promotion_decision(new_f1: float, new_per_class: dict[str, float], champion_f1: float | None,
                       champion_per_class: dict[str, float] | None, margin: float, tolerance: float) -> Decision:
    """The gate: beat the champion's macro-F1 by more than ``margin`` with no class's F1 dropping more
    than ``tolerance``. A tie never replaces the champion."""
    if champion_f1 is None:
        return Decision(True, f"no champion yet; macro-F1 {new_f1:.4f}")
    drops = {c: champion_per_class[c] - f for c, f in new_per_class.items() if c in (champion_per_class or {})}
    worst = max(drops.items(), key=lambda kv: kv[1], default=(None, 0.0))
    if not new_f1 > champion_f1 + margin:
        return Decision(False, f"macro-F1 {new_f1:.4f} does not beat the champion's {champion_f1:.4f} by more than the margin {margin}")
    if worst[1] > tolerance:
        return Decision(False, f"F1 of {worst[0]!r} drops by {worst[1]:.4f} (tolerance {tolerance}) although macro-F1 "
                                f"rises from {champion_f1:.4f} to {new_f1:.4f}")
    return Decision(True, f"macro-F1 {new_f1:.4f} beats the champion's {champion_f1:.4f} by more than {margin}; "
                          f"no class drops more than {tolerance}")
