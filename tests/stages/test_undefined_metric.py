"""A held-out split that cannot define the task's primary metric (no object, no nucleus): evaluate reports it as
null with its reason and exits 0 with a warning line; register's gate never promotes on it, naming the split."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from stages import evaluate, register
from tests.conftest import REPO
from tests.cvpipe.classification.conftest import fruits_manifest  # noqa: F401 - fixture
from tests.stages.test_register_reconcile import MODEL, argv, store, trained  # noqa: F401 - fixtures


class NothingToScore:
    """A task whose evaluation finds nothing to score: ``primary`` is what its metrics.json holds."""

    primary_metric = "map50_95"

    def __init__(self, primary, reason: str | None) -> None:
        self.primary, self.reason = primary, reason

    def train_config(self, params: dict):
        return params

    def evaluate(self, model_dir, data_dir, out, split, config, settings, compute, title) -> dict:
        return {"split": split, "images": 3, "map50_95": self.primary} | ({"undefined": self.reason} if self.reason else {})


@pytest.mark.parametrize(("primary", "reason", "expected"), [
    (None, "the test split holds no object of any class (3 background images)", "the test split holds no object of any class"),
    (math.nan, None, "map50_95 is nan, not a number"),
])
def test_evaluate_reports_an_undefined_primary_metric_as_null_and_warns(primary, reason, expected, tmp_path, monkeypatch,
                                                                       caplog):
    monkeypatch.setattr(evaluate, "get_task", lambda name: NothingToScore(primary, reason))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "train.json").write_text('{"params": {}}')
    out = tmp_path / "out"
    assert evaluate.main(["--dataset", "fruits360", "--model-dir", str(tmp_path / "m"), "--data-dir", str(tmp_path),
                          "--out", str(out), "--params", str(REPO / "params.yaml")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())  # strict JSON: a NaN would not parse as null
    assert metrics["map50_95"] is None and expected in metrics["undefined"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("warning: fruits360 on test (3 images): map50_95 is undefined: ")
    assert warnings[0].endswith("; register will not promote on it")


def test_register_never_promotes_on_an_undefined_metric(trained, store, tmp_path):  # noqa: F811
    manifest, model, evaluation = trained
    undefined = tmp_path / "eval"
    shutil.copytree(evaluation, undefined)
    metrics = json.loads((undefined / "metrics.json").read_text())
    reason = "the split holds no labelled image"
    (undefined / "metrics.json").write_text(json.dumps(metrics | {"macro_f1": None, "undefined": reason}))
    out = tmp_path / "report.json"
    assert register.main(argv((manifest, model, undefined), out)) == 0
    report = json.loads(out.read_text())
    assert (report["alias"], report["promoted"], report["score"], report["champion_score"]) == ("challenger", False, None, None)
    assert report["reason"] == f"macro_f1 is undefined on the test split ({reason}); a version is never promoted on it"
    version = store.get_model_version(MODEL, report["version"])
    assert version.tags["promotion.decision"] == "challenger" and version.tags["promotion.reason"] == report["reason"]
    assert version.tags["promotion.macro_f1"] == "undefined"
    assert "champion" not in store.get_registered_model(MODEL).aliases  # no champion yet, and none made of it
