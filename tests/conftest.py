"""Shared fixtures: real extracts (skipped when absent), tiny image writers, isolated tool homes."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvpipe.core.cpu import pin_kernels

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"

# Set before any test module imports ultralytics: it reads its settings folder once, at import, and
# tests change settings (mlflow off) that must not reach the user's ~/.config/Ultralytics.
os.environ["YOLO_CONFIG_DIR"] = tempfile.mkdtemp(prefix="cvpipe-tests-ultralytics-")
os.environ["YOLO_OFFLINE"] = "1"
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["DO_NOT_TRACK"] = "1"
# CPU kernels pinned before any test computes, as the stages do at their entry point (cvpipe/core/cpu.py):
# the bytes a test trains are those of every x86-64 machine.
pin_kernels()


@pytest.fixture
def realdata() -> Path:
    """``../shared/realdata``: small unmodified extracts of the real datasets."""
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata is not present on this machine")
    return REALDATA


def write_image(path: Path, size=(32, 24), mode="RGB", fmt=None, color=128) -> Path:
    """A small solid image of ``size`` (w, h) and ``mode``; format from the suffix unless ``fmt``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        image = Image.fromarray(np.full(size[::-1], 40000, dtype=np.uint16))
    else:
        image = Image.new(mode, size, color if mode in ("L", "1", "P") else (color,) * len(mode))
    image.save(path, format=fmt)
    return path




@pytest.fixture(autouse=True)
def _mlflow_registry_uri_not_leaked():
    """``mlflow.set_registry_uri`` also exports ``MLFLOW_REGISTRY_URI``: a later test's own store (and the
    processes it starts) would register into the earlier test's. Restored after every test."""
    before = os.environ.get("MLFLOW_REGISTRY_URI")
    yield
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_registry_uri(None)
    if before is None:
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
    else:
        os.environ["MLFLOW_REGISTRY_URI"] = before
