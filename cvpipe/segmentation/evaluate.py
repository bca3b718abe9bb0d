"""Nuclei evaluation: the DSB2018 score, pixel IoU and Dice, per image and per image type; pictures.

Writes ``metrics.json`` (flat, for ``dvc metrics diff``), ``per_image.csv`` (every held-out image:
type, nuclei, predictions, DSB score, pixel IoU, Dice, TP/FP/FN at IoU 0.5), ``thresholds.csv`` (the
mean TP / (TP + FP + FN) at each IoU threshold, a ``dvc plots`` curve), ``worst.png`` (the worst
images: matched nuclei green, false ones red, missed ones outlined in blue) and, for the dataset's test
images, ``submission.csv`` in the competition's format (only its header when there are none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvpipe.core.errors import ParamsError
from cvpipe.core.io import write_bytes, write_text
from cvpipe.core.params import check_keys, mapping, number
from cvpipe.core.plots import csv_text, png
from cvpipe.segmentation.instances import InstanceConfig
from cvpipe.segmentation.metrics import THRESHOLDS, ImageScore, image_score, image_type, pixel_scores
from cvpipe.tasks import UNDEFINED

MATCHED, FALSE, MISSED = (40, 200, 70), (230, 40, 40), (50, 110, 255)


@dataclass(frozen=True)
class Settings:
    """``segmentation.evaluate`` in params.yaml: how predictions become nuclei, and the gallery's size."""

    instances: InstanceConfig = field(default_factory=InstanceConfig)
    gallery: int = 6  # the worst images drawn in worst.png

    @classmethod
    def from_params(cls, section: dict | None) -> Settings:
        section = dict(mapping(section or {}, ""))
        check_keys(section, ["instances", "gallery"])
        try:
            instances = InstanceConfig.from_params(section.pop("instances", {}))
        except ParamsError as exc:
            raise exc.under("instances") from None
        number(section.get("gallery", 6), "gallery", integer=True, minimum=0)
        return cls(instances, **section)


@dataclass(frozen=True)
class Scored:
    """One held-out image, predicted and scored."""

    image_id: str
    path: str
    kind: str  # fluorescence | brightfield
    score: ImageScore
    pixel_iou: float
    dice: float


def score_image(image_id: str, path: str, rgb: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> Scored:
    fg_iou, dice = pixel_scores(truth > 0, predicted > 0)
    return Scored(image_id, path, image_type(rgb), image_score(truth, predicted), fg_iou, dice)


def by_type(scored: Sequence[Scored]) -> dict[str, float]:
    """Mean DSB score per image type present."""
    kinds = sorted({s.kind for s in scored})
    return {k: float(np.mean([s.score.score for s in scored if s.kind == k])) for k in kinds}


def summary(scored: Sequence[Scored], split: str) -> dict:
    """metrics.json: the DSB score (primary), pixel IoU and Dice, counts, the score per image type."""
    nuclei = sum(s.score.true_count for s in scored)
    tp = sum(s.score.tp[0] for s in scored)
    fp = sum(s.score.fp[0] for s in scored)
    return {
        "split": split,
        "images": len(scored),
        "nuclei": nuclei,
        "predicted": sum(s.score.pred_count for s in scored),
        "dsb_score": round(float(np.mean([s.score.score for s in scored])), 6) if nuclei else None,
        "pixel_iou": round(float(np.mean([s.pixel_iou for s in scored])), 6),
        "dice": round(float(np.mean([s.dice for s in scored])), 6),
        "precision50": round(tp / (tp + fp), 6) if tp + fp else 0.0,  # at IoU > 0.5, over all nuclei
        "recall50": round(tp / nuclei, 6) if nuclei else 0.0,
        "dsb_score_by_type": {k: round(v, 6) for k, v in by_type(scored).items()},
    } | ({} if nuclei else {UNDEFINED: f"the {split} split holds no nucleus ({len(scored)} images): predicting nothing would "
                                       "score 1.0, so the DSB score ranks no model"})


def per_image_rows(scored: Sequence[Scored]) -> list[dict]:
    return [{"image_id": s.image_id, "type": s.kind, "nuclei": s.score.true_count, "predicted": s.score.pred_count,
             "dsb_score": s.score.score, "pixel_iou": s.pixel_iou, "dice": s.dice, "tp50": s.score.tp[0],
             "fp50": s.score.fp[0], "fn50": s.score.fn[0], "path": s.path} for s in scored]


def threshold_rows(scored: Sequence[Scored]) -> list[dict]:
    """Mean over images of TP / (TP + FP + FN) at each IoU threshold (an empty image counts 1)."""
    rows = []
    for k, t in enumerate(THRESHOLDS):
        values = [(s.score.tp[k] / d) if (d := s.score.tp[k] + s.score.fp[k] + s.score.fn[k]) else 1.0 for s in scored]
        rows.append({"iou_threshold": round(float(t), 2), "score": float(np.mean(values))})
    return rows


def overlay(rgb: np.ndarray, truth: np.ndarray, predicted: np.ndarray, score: ImageScore) -> np.ndarray:
    """The image with predicted nuclei filled, green where matched and red where false (at IoU 0.5), each
    outlined in white so touching ones stay apart, and missed true nuclei outlined in blue."""
    from skimage.segmentation import find_boundaries

    out = rgb.astype(np.float32).copy()
    for chosen, colour in ((score.matched_pred, MATCHED), (score.false_pred, FALSE)):
        where = np.isin(predicted, np.asarray(chosen, dtype=predicted.dtype)) & (predicted > 0)
        out[where] = 0.4 * out[where] + 0.6 * np.asarray(colour, dtype=np.float32)
    out[find_boundaries(predicted, mode="inner")] = 255
    missed = np.where(np.isin(truth, np.asarray(score.missed_true, dtype=truth.dtype)), truth, 0)
    out[find_boundaries(missed, mode="thick") & (missed > 0) | find_boundaries(missed, mode="outer")] = MISSED
    return out.clip(0, 255).astype(np.uint8)


def gallery_png(items: Sequence[tuple[Scored, np.ndarray, np.ndarray]], title: str) -> bytes:
    """Rows of (image, overlay) for the given (scored image, RGB, overlay) items."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = max(len(items), 1)
    fig, axes = plt.subplots(rows, 2, figsize=(7, 3.3 * rows + 0.6), squeeze=False, constrained_layout=True)
    for ax_row, (s, rgb, over) in zip(axes, items, strict=False):
        ax_row[0].imshow(rgb, interpolation="nearest")
        ax_row[0].set_title(f"{s.image_id[:12]} ({s.kind})", fontsize=9)
        ax_row[1].imshow(over, interpolation="nearest")
        ax_row[1].set_title(f"DSB {s.score.score:.3f}: {s.score.true_count} nuclei, {s.score.pred_count} predicted", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    if not items:
        axes[0, 0].text(0.5, 0.5, "no images", ha="center", va="center")
    legend = [Patch(color=np.array(c) / 255, label=t) for c, t in
              ((MATCHED, "matched (IoU > 0.5)"), (FALSE, "false nucleus"), (MISSED, "missed nucleus (outline)"))]
    fig.legend(handles=legend, loc="outside lower center", ncol=3, fontsize=9)
    fig.suptitle(title)
    return png(fig)


def worst(scored: Sequence[Scored], count: int) -> list[Scored]:
    """The ``count`` lowest DSB scores (ties by image id)."""
    return sorted(scored, key=lambda s: (s.score.score, s.image_id))[:count]


def write_report(out: Path, scored: Sequence[Scored], pictures: dict[str, tuple[np.ndarray, np.ndarray]], title: str,
                 split: str, gallery: int) -> dict:
    """Every report but the submission; returns metrics.json's content. ``pictures``: image id -> (RGB, overlay)."""
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "per_image.csv", csv_text(per_image_rows(scored)))
    write_text(out / "thresholds.csv", csv_text(threshold_rows(scored)))
    chosen = worst(scored, gallery)
    write_bytes(out / "worst.png", gallery_png([(s, *pictures[s.image_id]) for s in chosen],
                                               f"{title}: the {len(chosen)} worst images ({split})"))
    return summary(scored, split)
