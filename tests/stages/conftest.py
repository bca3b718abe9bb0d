"""Fixtures shared by the stage tests."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from cvpipe.classification.fit import TrainConfig
from cvpipe.segmentation.evaluate import Settings
from cvpipe.segmentation.fit import SegmentationConfig
from cvpipe.tasks import Compute
from stages import evaluate, register, train
from tests.cvpipe.classification.conftest import fruits_manifest  # noqa: F401 - fixture


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    """A temporary MLflow SQLite store, for the stages and for the test's own client."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    return uri


@pytest.fixture(scope="session")
def dsb_validated(tmp_path_factory) -> Path:
    """The embedded DSB2018 sample, ingested and validated."""
    from cvpipe.gate import GateConfig
    from cvpipe.sources.samples import generate
    from stages import ingest, validate

    tmp = tmp_path_factory.mktemp("dsb")
    raw = generate("dsb2018", tmp / "raw")
    ingest.run("dsb2018", raw, tmp / "manifest")
    validate.run(tmp / "manifest", GateConfig(task="segmentation", source="dsb2018", modes=("RGBA",)), tmp / "report",
                 tmp / "validated", workers=2)
    return tmp / "validated"


TINY = {"architecture": "littlevgg", "image_size": 32, "epochs": 2, "batch_size": 16, "lr": 0.003, "patience": 4, "seed": 0}
UNET = {"base": 8, "depth": 2, "input_size": 48, "crops_per_image": 1, "epochs": 1, "batch_size": 16, "lr": 0.003, "patience": 8}
GATE = register.Gate(min_delta=0.0, tolerance=0.05, cpu_threads=2)
COMPUTE = Compute("auto", 2, None)


@pytest.fixture(scope="session")
def registry(fruits_manifest, dsb_validated, tmp_path_factory):  # noqa: F811
    """A SQLite store holding a classifier (``fruits360-classifier``) and a U-Net (``nuclei-segmenter``), each @champion."""
    from mlflow.tracking._tracking_service import utils

    root = tmp_path_factory.mktemp("export")
    before = utils._tracking_uri  # what the session had set (None: the environment decides)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
        train.run("classification", fruits_manifest, root / "clf", TrainConfig.from_params(TINY), COMPUTE)
        evaluate.run("classification", root / "clf", fruits_manifest, root / "clf_eval", None, COMPUTE)
        register.run("fruits360", "classification", root / "clf", root / "clf_eval", fruits_manifest, GATE, mlruns=root)
        settings = Settings.from_params({"instances": {"min_distance": 5, "min_area": 15}, "gallery": 2})
        train.run("segmentation", dsb_validated, root / "unet", SegmentationConfig.from_params(UNET), COMPUTE)
        evaluate.run("segmentation", root / "unet", dsb_validated, root / "unet_eval", settings, COMPUTE)
        register.run("nuclei", "segmentation", root / "unet", root / "unet_eval", dsb_validated, GATE, settings, mlruns=root)
    utils._tracking_uri = before  # the store is the tests' to point at (their ``store`` fixture), not the session's
    return root, fruits_manifest, dsb_validated


