"""train -> evaluate -> register on the embedded Fruits-360 sample, with a temporary MLflow store."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from cvpipe.classification.data import load_table
from cvpipe.classification.fit import TrainConfig
from cvpipe.core.errors import CvpipeError
from cvpipe.data.model_input import images_frame
from cvpipe.tasks import Compute
from stages import evaluate, register, train
from tests.cvpipe.classification.conftest import fruits_manifest  # noqa: F401 - fixture

PARAMS = {"architecture": "littlevgg", "image_size": 32, "epochs": 12, "batch_size": 16, "lr": 0.003, "patience": 4, "seed": 0,
          "augment": {"rotation": 10, "width_shift": 0.1, "height_shift": 0.1, "horizontal_flip": True}}
GATE = register.Gate(min_delta=0.0, tolerance=0.05, cpu_threads=2)


def compute(tmp_path) -> Compute:
    return Compute("auto", 2, tmp_path / "cache")


def test_train_evaluate_register_and_the_promotion_gate(fruits_manifest, tmp_path, store, capsys):  # noqa: F811
    good = train.run("classification", fruits_manifest, tmp_path / "good", TrainConfig.from_params(PARAMS), compute(tmp_path))
    assert good.epochs >= 3 and good.device == "cpu"
    assert list((tmp_path / "cache/checkpoints").glob("*.pt")) == []  # finished runs leave no checkpoint to resume
    history = pd.read_csv(tmp_path / "good/history.csv")
    assert history["epoch"].tolist() == list(range(1, good.epochs + 1))
    ev = evaluate.run("classification", tmp_path / "good", fruits_manifest, tmp_path / "eval_good", None, compute(tmp_path))
    assert ev.images == 40 and ev.metrics["accuracy"] >= 0.9 and ev.primary_metric == "macro_f1" and ev.primary == ev.metrics["macro_f1"]
    metrics = json.loads((tmp_path / "eval_good/metrics.json").read_text())
    assert metrics["split"] == "test" and set(metrics["f1"]) == {"Apple Braeburn", "Banana", "Blueberry", "Kiwi", "Orange"}
    predictions = pd.read_csv(tmp_path / "eval_good/predictions.csv")
    assert list(predictions.columns) == ["path", "actual", "predicted", "confidence"] and len(predictions) == 40

    first = register.run("fruits", "classification", tmp_path / "good", tmp_path / "eval_good", fruits_manifest, GATE)
    assert first.alias == "champion" and first.promoted and first.version == "1"

    # a deliberately worse model: one epoch
    worse = train.run("classification", fruits_manifest, tmp_path / "worse",
                      TrainConfig.from_params(PARAMS | {"epochs": 1, "lr": 0.0005}), compute(tmp_path))
    assert worse.epochs == 1
    evaluate.run("classification", tmp_path / "worse", fruits_manifest, tmp_path / "eval_worse", None, compute(tmp_path))
    second = register.run("fruits", "classification", tmp_path / "worse", tmp_path / "eval_worse", fruits_manifest, GATE)
    assert second.alias == "challenger" and not second.promoted and second.champion_version == "1"
    assert second.metric == "macro_f1" and second.score < second.champion_score and "does not beat" in second.reason

    client = MlflowClient()
    assert str(client.get_model_version_by_alias("fruits-classifier", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("fruits-classifier", "challenger").version) == "2"
    runs = client.search_runs([client.get_experiment_by_name("fruits").experiment_id])
    assert len(runs) == 2  # one run per registration, no stray ones
    run = client.get_run(first.run_id)
    assert run.data.tags["promotion.decision"] == "champion" and run.data.tags["git.commit"] != ""
    assert run.data.tags["data.digest"] == load_table(fruits_manifest, 0.2).digest()
    assert run.data.params["train.architecture"] == "littlevgg" and run.data.params["train.augment.rotation"] == "10"
    assert len(client.get_metric_history(first.run_id, "val_loss")) == good.epochs  # per-epoch metrics
    assert run.data.metrics["test_accuracy"] >= 0.9
    artifacts = {a.path for a in client.list_artifacts(first.run_id, "evaluation")}
    assert {"evaluation/confusion.png", "evaluation/misclassified.png", "evaluation/gradcam.png", "evaluation/filters.png",
            "evaluation/metrics.json", "evaluation/per_class.csv"} <= artifacts
    assert run.inputs.dataset_inputs[0].dataset.name == "fruits"
    version = client.get_model_version("fruits-classifier", "2")
    assert version.tags["promotion.decision"] == "challenger" and version.tags["promotion.reason"] == second.reason
    assert version.tags["data.digest"] == run.data.tags["data.digest"]
    # the gate's evidence: the paired interval of the difference on the 40 held-out images, in the report and the registry
    assert first.difference is None and first.changes == {}
    # each version's own figure comes with its interval: stated in a first version's reason, in both reports and tags
    own = first.interval
    assert own["images"] == 40 and own["low"] <= own["estimate"] <= own["high"] and own["estimate"] == pytest.approx(first.score, abs=1e-6)
    assert first.reason == f"no champion yet; macro_f1 {own['estimate']:.4f} (95% CI {own['low']:.4f} to {own['high']:.4f}, " \
                           "1000 resamples of 40 images)"
    assert "interval" in register.report(first) and second.interval["estimate"] == pytest.approx(second.score, abs=1e-6)
    assert client.get_model_version("fruits-classifier", "1").tags["promotion.macro_f1_interval"].endswith("1000 resamples of 40 images")
    d = second.difference
    assert d["images"] == 40 and d["resamples"] == 1000 and d["low"] <= d["estimate"] <= d["high"] < 0
    assert d["estimate"] == pytest.approx(second.score - second.champion_score, abs=1e-5)
    assert set(second.changes) == set(metrics["f1"]) and "95% CI" in second.reason
    assert version.tags["promotion.difference"] == f"{d['estimate']:+.6f}" and version.tags["promotion.interval"].startswith("[")
    promotion = mlflow.artifacts.load_dict(f"runs:/{second.run_id}/promotion.json")
    assert promotion["difference"] == d and promotion["bootstrap"] == {"confidence": 0.95, "resamples": 1000, "seed": 0}
    assert client.get_run(second.run_id).data.metrics["promotion_ci_high"] == pytest.approx(d["high"], abs=1e-6)
    # every decision, in order, with who and when: python -m stages.register --history NAME
    assert register.main(["--history", "fruits-classifier"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["version", "decided", "(UTC)"] and len(lines) == 3
    assert lines[1].startswith("v1 ") and " champion " in lines[1] and "no champion yet" in lines[1]
    assert lines[2].startswith("v2 ") and " challenger " in lines[2] and lines[2].endswith(second.reason)
    assert version.tags["promotion.by"] in lines[2] and version.tags["promotion.time"] in lines[2]
    assert register.main(["--history", "no-such-model"]) == 1
    assert capsys.readouterr().err.strip() == "error: no registered model 'no-such-model' (or it has no version yet)"

    model = mlflow.pyfunc.load_model("models:/fruits-classifier@champion")
    assert model.metadata.signature is not None
    table = load_table(fruits_manifest, 0.2)
    test = table.indices("test")[::8]
    predicted = model.predict(images_frame(table.files[k] for k in test))  # the files as they are, any size
    truth = [table.classes.names[table.labels[k]] for k in test]
    assert all(isinstance(p, str) for p in predicted) and sum(p == t for p, t in zip(predicted, truth, strict=True)) >= len(truth) - 1


def test_tasks_without_a_trainer_and_unknown_tasks_are_named(tmp_path, monkeypatch):
    from cvpipe import tasks

    monkeypatch.setitem(tasks.TASKS, "keypoints", None)  # a task whose data stages exist, its trainer not yet
    with pytest.raises(CvpipeError, match="the keypoints task has no trainer yet"):
        train.run("keypoints", tmp_path, tmp_path / "out", None, compute(tmp_path))
    monkeypatch.delitem(tasks.TASKS, "keypoints")
    with pytest.raises(CvpipeError, match="unknown task 'ocr'; choose one of classification, detection, segmentation"):
        evaluate.run("ocr", tmp_path, tmp_path, tmp_path / "out", None, compute(tmp_path))
    assert not (tmp_path / "out").exists()


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert train.main(["--dataset", "nope", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "has no dataset 'nope'" in capsys.readouterr().err
    argv = ["--dataset", "fruits360", "--model-dir", str(tmp_path), "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "out")]
    assert evaluate.main(argv) == 1
    assert f"{tmp_path / 'train.json'}: not found (run the train stage first)" in capsys.readouterr().err
    (tmp_path / "train.json").write_text('{"params": {"val_fraction": 2}}')
    assert evaluate.main(argv) == 1  # train.json read back through the task's config class, which names the key
    assert f"{tmp_path / 'train.json'}: params.val_fraction:" in capsys.readouterr().err
    (tmp_path / "train.json").write_text('{"params": {}}')
    assert evaluate.main(argv) == 1
    assert "no such manifest folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
