"""The results flow: each dataset's gate, metrics, pictures and registry decision as Prefect artifacts, read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.stages.test_summary import finished_project


@pytest.fixture
def finished(tmp_path) -> Path:
    return finished_project(tmp_path)


@pytest.mark.slow
def test_the_results_flow_publishes_each_datasets_artifacts(finished):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.testing.utilities import prefect_test_harness

    from flows.results import results

    with prefect_test_harness(server_startup_timeout=120):
        keys = results(root=str(finished), mlflow_ui="http://mlflow.example:5000")
        with get_client(sync_client=True) as client:
            found = {a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="-")))}

    assert keys["fruits360"] == ["gate-fruits360", "metrics-fruits360", "pictures-fruits360", "model-fruits360"]
    assert keys["coco"] == ["gate-coco", "metrics-coco", "pictures-coco", "model-coco", "quarantine-coco"]
    assert set(found) == {k for ks in keys.values() for k in ks}
    assert {found[k].type for k in found} == {"table", "markdown"}

    gate = json.loads(found["gate-fruits360"].data)
    assert [(row["check"], row["passed"], row["failing rows"]) for row in gate] == [("images.decode", True, 0),
                                                                                    ("classes.balance", False, 2)]
    assert "passed: 300 images" in found["gate-fruits360"].description
    assert json.loads(found["quarantine-coco"].data)[0]["image"] == "a/b.jpg"
    assert "1 quarantined" in found["gate-coco"].description and "`a/b.jpg`: cannot decode" in found["gate-coco"].description

    metrics = {row["metric"]: row["value"] for row in json.loads(found["metrics-fruits360"].data)}
    assert metrics == {"images": 60, "macro_f1": 0.875, "accuracy": 0.9}  # the numbers of metrics.json, nothing else
    assert "(60 images)" in found["metrics-fruits360"].description

    pictures = found["pictures-fruits360"].data
    assert pictures.count("](data:image/png;base64,") == 2  # inline: nothing for the browser to fetch
    assert pictures.index("Confusion matrix") < pictures.index("Grad-CAM")

    model = found["model-fruits360"].data
    assert "fruits360-classifier v2 is @challenger; v1 stays @champion" in model
    assert "(http://mlflow.example:5000/#/models/fruits360-classifier/versions/2)" in model
    assert found["model-simpsons"].data.endswith("not registered yet")
    assert "not evaluated yet" in found["metrics-simpsons"].data
