"""A copy of the project for flow tests, and the environment a flow runs in there."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from tests.conftest import REPO


def copy_project(dest: Path, datasets: list[str]) -> Path:
    """The code, dvc.yaml and a params.yaml with ``datasets`` only (no decode cache)."""
    for folder in ("cvpipe", "stages", "flows"):
        shutil.copytree(REPO / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", dest / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["datasets"] = {k: params["datasets"][k] for k in datasets}
    params["validate"]["cache"] = None
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def flow_env(project: Path, **extra: str) -> dict[str, str]:
    """This environment without the caller's Prefect, MLflow and Dask settings: the project's own stores."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "DASK_"))}
    return env | {"PREFECT_HOME": str(project / ".prefect"), "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}",
                  "PYTHONPATH": str(project), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                  # a busy 2-core machine can take longer than Prefect's 20 s to start its temporary server
                  "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"} | extra
