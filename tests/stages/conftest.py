"""Fixtures shared by the stage tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    """A temporary MLflow SQLite store, for the stages and for the test's own client."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    return uri
