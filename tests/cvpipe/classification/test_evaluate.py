from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cvpipe.classification.evaluate import score, write_report

NAMES = ["cat", "dog", "fox"]


def test_scores_from_a_known_confusion():
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 1, 0, 2, 2, 1])
    s = score(y_true, y_pred, NAMES)
    assert s.confusion.tolist() == [[3, 1, 0], [1, 2, 0], [0, 1, 2]]
    assert s.accuracy == pytest.approx(0.7)
    f1 = s.f1_by_class()
    assert f1["cat"] == pytest.approx(0.75) and f1["dog"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s.macro_f1 == pytest.approx(np.mean(list(f1.values())))
    assert s.weighted["f1"] == pytest.approx((4 * f1["cat"] + 3 * f1["dog"] + 3 * f1["fox"]) / 10)
    assert s.normalized()[0].tolist() == [0.75, 0.25, 0.0]
    assert s.top_confusions(2) == [{"true": "cat", "predicted": "dog", "count": 1}, {"true": "dog", "predicted": "cat", "count": 1}]


def test_report_files_carry_the_class_names(tmp_path):
    y_true, y_pred = np.array([0, 1, 2, 2]), np.array([0, 1, 2, 0])
    s = score(y_true, y_pred, NAMES)
    predictions = pd.DataFrame({"path": list("abcd"), "actual": [NAMES[t] for t in y_true], "predicted": [NAMES[p] for p in y_pred]})
    wrong = [(np.zeros((8, 8, 3), dtype=np.uint8), "fox\n-> cat (0.90)")]
    metrics = write_report(tmp_path, s, predictions, "toy", wrong)
    assert metrics["accuracy"] == 0.75 and set(metrics["f1"]) == set(NAMES)
    confusion = pd.read_csv(tmp_path / "confusion.csv", index_col=0)
    assert list(confusion.columns) == NAMES and list(confusion.index) == NAMES and confusion.loc["fox", "cat"] == 1
    per_class = pd.read_csv(tmp_path / "per_class.csv")
    assert per_class["class"].tolist() == [*NAMES, "macro avg", "weighted avg"] and per_class["support"].tolist() == [1, 1, 2, 4, 4]
    assert pd.read_csv(tmp_path / "top_confusions.csv").to_dict("records") == [{"true": "fox", "predicted": "cat", "count": 1}]
    for png in ("confusion.png", "misclassified.png"):
        with Image.open(io.BytesIO((tmp_path / png).read_bytes())) as im:
            assert im.format == "PNG" and im.width > 200
    first = (tmp_path / "confusion.png").read_bytes()
    write_report(tmp_path, s, predictions, "toy", wrong)
    assert (tmp_path / "confusion.png").read_bytes() == first  # no timestamps: dvc sees no change
