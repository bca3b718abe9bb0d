"""Classification metrics and pictures: confusion matrices, per-class scores, misclassified gallery.

Metrics come from scikit-learn; every axis and table is labelled with the dataset's class names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from cvpipe.core.io import write_bytes, write_text
from cvpipe.core.plots import confusion_csv, image_grid, matrix_png, note_png, png


@dataclass(frozen=True)
class Scores:
    """Everything the evaluation reports, from true and predicted class indices."""

    names: list[str]
    confusion: np.ndarray  # counts, rows = true class, columns = predicted
    per_class: pd.DataFrame  # class, precision, recall, f1, support
    accuracy: float
    macro: dict[str, float]
    weighted: dict[str, float]

    @property
    def macro_f1(self) -> float:
        return self.macro["f1"]

    def f1_by_class(self) -> dict[str, float]:
        return dict(zip(self.per_class["class"], self.per_class["f1"], strict=True))

    def normalized(self) -> np.ndarray:
        rows = self.confusion.sum(1, keepdims=True)
        return np.divide(self.confusion, rows, out=np.zeros(self.confusion.shape), where=rows > 0)

    def top_confusions(self, k: int = 5) -> list[dict]:
        """The most frequent (true, predicted) mistakes, largest first."""
        pairs = [(int(self.confusion[t, p]), t, p) for t in range(len(self.names)) for p in range(len(self.names))
                 if t != p and self.confusion[t, p] > 0]
        pairs.sort(key=lambda x: (-x[0], x[1], x[2]))
        return [{"true": self.names[t], "predicted": self.names[p], "count": n} for n, t, p in pairs[:k]]

    def metrics(self) -> dict:
        """``metrics.json``: flat numbers for ``dvc metrics show/diff``, per-class F1 nested by name."""
        r = lambda v: round(float(v), 6)  # noqa: E731
        return {
            "accuracy": r(self.accuracy),
            "macro_f1": r(self.macro["f1"]),
            "macro_precision": r(self.macro["precision"]),
            "macro_recall": r(self.macro["recall"]),
            "weighted_f1": r(self.weighted["f1"]),
            "images": int(self.confusion.sum()),
            "f1": {c: r(v) for c, v in self.f1_by_class().items()},
        }


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> float:
    """scikit-learn's macro F1 over all ``classes`` labels (``zero_division=0``) from counts alone: 2 TP / (true +
    predicted) per class, 0 for a class neither true nor predicted. Fast enough to rescore bootstrap resamples."""
    tp = np.bincount(y_true[y_true == y_pred], minlength=classes)
    counted = np.bincount(y_true, minlength=classes) + np.bincount(y_pred, minlength=classes)
    return float(np.mean(np.divide(2.0 * tp, counted, out=np.zeros(classes), where=counted > 0)))


def score(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> Scores:
    labels = list(range(len(names)))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    per_class = pd.DataFrame({"class": names, "precision": p, "recall": r, "f1": f, "support": s})
    avg = {}
    for kind in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=kind, zero_division=0)
        avg[kind] = {"precision": float(ap), "recall": float(ar), "f1": float(af)}
    accuracy = float((np.asarray(y_true) == np.asarray(y_pred)).mean()) if len(y_true) else 0.0
    return Scores(names, cm, per_class, accuracy, avg["macro"], avg["weighted"])


def per_class_table(scores: Scores) -> str:
    """Per-class precision, recall, F1 and support, then macro and weighted averages (CSV)."""
    table = scores.per_class.copy()
    total = int(table["support"].sum())
    table.loc[len(table)] = ["macro avg", scores.macro["precision"], scores.macro["recall"], scores.macro["f1"], total]
    table.loc[len(table)] = ["weighted avg", scores.weighted["precision"], scores.weighted["recall"], scores.weighted["f1"], total]
    return table.round(6).to_csv(index=False, lineterminator="\n")


def confusion_png(scores: Scores, title: str) -> bytes:
    """Counts and row-normalised confusion matrices side by side, class names on both axes."""
    return matrix_png(scores.confusion, scores.normalized(), scores.names, scores.names, title)


def gallery_png(images: list[np.ndarray], captions: list[str], title: str, columns: int = 6) -> bytes:
    """A grid of images (HWC uint8) with their captions; a note when there is nothing to show."""
    if not images:
        return note_png(f"{title}\nno misclassified images")
    fig, axes = image_grid(len(images), columns, (2.3, 2.6))
    for ax, image, caption in zip(axes.flat, images, captions, strict=False):
        ax.imshow(image)
        ax.set_title(caption, fontsize=7, color="firebrick")
    fig.suptitle(title)
    fig.tight_layout()
    return png(fig)


def write_report(out: Path, scores: Scores, predictions: pd.DataFrame, title: str, misclassified: list[tuple[np.ndarray, str]]) -> dict:
    """Every evaluation file under ``out``; returns ``metrics.json``'s content."""
    metrics = scores.metrics()
    write_text(out / "per_class.csv", per_class_table(scores))
    write_text(out / "confusion.csv", confusion_csv(scores.confusion, scores.names))
    write_text(out / "confusion_normalized.csv", confusion_csv(scores.normalized(), scores.names, 6))
    top = pd.DataFrame(scores.top_confusions(10), columns=["true", "predicted", "count"])
    write_text(out / "top_confusions.csv", top.to_csv(index=False, lineterminator="\n"))
    write_text(out / "predictions.csv", predictions.to_csv(index=False, lineterminator="\n"))
    write_bytes(out / "confusion.png", confusion_png(scores, title))
    write_bytes(out / "misclassified.png", gallery_png([m[0] for m in misclassified], [m[1] for m in misclassified],
                                                        f"{title}: misclassified (true -> predicted, confidence)"))
    return metrics
