"""The Data Science Bowl 2018 metric: mean over IoU thresholds of TP / (TP + FP + FN), per image.

Kaggle's definition: at each threshold t in 0.50, 0.55, ..., 0.95 a predicted object matches a true
object when their IoU is strictly above t (one to one); the image's score is the mean over the
thresholds of TP / (TP + FP + FN), and the competition's score the mean over images. Label images are
integer arrays of any equal shape (0 = background, each object one positive label, not necessarily
consecutive), so the same code scores 2-D label images and the flat pixel indices of a submission.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

THRESHOLDS = np.arange(50, 100, 5) / 100  # 0.50 ... 0.95, each the float its literal is (70 / 100 == 0.7)


@dataclass(frozen=True)
class ImageScore:
    """One image's DSB score, its counts per threshold, and which objects matched at IoU > 0.5."""

    score: float
    tp: tuple[int, ...]
    fp: tuple[int, ...]
    fn: tuple[int, ...]
    true_count: int
    pred_count: int
    matched_true: tuple[int, ...]  # pairwise with matched_pred
    matched_pred: tuple[int, ...]
    false_pred: tuple[int, ...]
    missed_true: tuple[int, ...]


def _check(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth, pred = np.asarray(truth), np.asarray(pred)
    if truth.shape != pred.shape:
        raise ValueError(f"truth has shape {truth.shape}, prediction {pred.shape}: label images must have the same shape")
    for name, labels in (("truth", truth), ("prediction", pred)):
        if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
            raise ValueError(f"{name} labels have dtype {labels.dtype}, expected integers (0 = background)")
        if labels.size and labels.min() < 0:
            raise ValueError(f"{name} has negative labels, expected 0 (background) or positive object labels")
    return truth.ravel(), pred.ravel()


def _overlaps(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth labels, pred labels (both increasing) and their (n_true, n_pred) IoU matrix."""
    t, p = _check(truth, pred)
    true_labels, true_area = np.unique(t[t > 0], return_counts=True)
    pred_labels, pred_area = np.unique(p[p > 0], return_counts=True)
    both = (t > 0) & (p > 0)
    rows = np.searchsorted(true_labels, t[both])
    cols = np.searchsorted(pred_labels, p[both])
    n_true, n_pred = true_labels.size, pred_labels.size
    intersection = np.bincount(rows * n_pred + cols, minlength=n_true * n_pred).reshape(n_true, n_pred)
    union = true_area[:, None] + pred_area[None, :] - intersection  # >= each area > 0
    return true_labels, pred_labels, intersection / union


def iou_matrix(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(n_true, n_pred) IoU of every true object with every predicted one, labels in increasing order."""
    return _overlaps(truth, pred)[2]


def _precision(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """TP / (TP + FP + FN) per threshold; 1.0 where there is nothing to find and nothing was found."""
    total = tp + fp + fn
    return np.where(total == 0, 1.0, tp / np.maximum(total, 1))


def image_score(truth: np.ndarray, pred: np.ndarray) -> ImageScore:
    """DSB2018 score of one image's predicted labels against its true labels.

    Empty cases: no true object and no prediction scores 1.0 at every threshold (nothing to find,
    nothing found: a perfect answer, where TP / (TP + FP + FN) would be 0 / 0); predictions without a
    true object score 0.0 (all FP), true objects without predictions 0.0 (all FN).
    """
    true_labels, pred_labels, iou = _overlaps(truth, pred)
    # Objects of one label image do not overlap, and IoU > t >= 0.5 means sharing more than half of
    # each object's pixels: at most one partner per object passes, so the one-to-one matching is
    # unique and TP is the number of pairs above t.
    rows, cols = np.nonzero(iou > THRESHOLDS[0])
    above = iou[rows, cols]
    tp = (above[:, None] > THRESHOLDS[None, :]).sum(axis=0)
    fp, fn = pred_labels.size - tp, true_labels.size - tp
    matched_true, matched_pred = true_labels[rows], pred_labels[cols]
    return ImageScore(
        score=float(np.mean(_precision(tp, fp, fn))),
        tp=tuple(tp.tolist()),
        fp=tuple(fp.tolist()),
        fn=tuple(fn.tolist()),
        true_count=int(true_labels.size),
        pred_count=int(pred_labels.size),
        matched_true=tuple(matched_true.tolist()),
        matched_pred=tuple(matched_pred.tolist()),
        false_pred=tuple(np.setdiff1d(pred_labels, matched_pred).tolist()),
        missed_true=tuple(np.setdiff1d(true_labels, matched_true).tolist()),
    )


def dsb_score(scores: Iterable[ImageScore]) -> float:
    """The competition's score: the mean of the images' scores."""
    values = [s.score for s in scores]
    if not values:
        raise ValueError("no image to score: the DSB score is a mean over at least one image")
    return float(np.mean(values))


def image_score_loop(truth: np.ndarray, pred: np.ndarray) -> float:
    """The same score, the straightforward way: per threshold, every pair's IoU from boolean masks,
    matched greedily one to one. A reference for tests and the baseline of ``bench/segment.py``."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    _check(truth, pred)
    true_masks = [truth == label for label in np.unique(truth) if label != 0]
    pred_masks = [pred == label for label in np.unique(pred) if label != 0]
    precisions = []
    for threshold in THRESHOLDS:
        used = set()
        tp = 0
        for a in true_masks:
            for j, b in enumerate(pred_masks):
                if j in used:
                    continue
                if (a & b).sum() / (a | b).sum() > threshold:
                    tp += 1
                    used.add(j)
                    break
        fp, fn = len(pred_masks) - tp, len(true_masks) - tp
        precisions.append(1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn))
    return float(np.mean(precisions))


def pixel_scores(truth_fg: np.ndarray, pred_fg: np.ndarray) -> tuple[float, float]:
    """Foreground IoU and Dice of two boolean masks; (1.0, 1.0) when both are empty."""
    a, b = np.asarray(truth_fg, dtype=bool), np.asarray(pred_fg, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"truth has shape {a.shape}, prediction {b.shape}: masks must have the same shape")
    intersection, union, total = int((a & b).sum()), int((a | b).sum()), int(a.sum()) + int(b.sum())
    if union == 0:
        return 1.0, 1.0
    return intersection / union, 2 * intersection / total


FLUORESCENCE_MAX_BRIGHTNESS = 100  # median of the channels' mean, 0-255: below it, a dark fluorescence image
FLUORESCENCE, BRIGHTFIELD = "fluorescence", "brightfield"


def image_type(rgb: np.ndarray) -> str:
    """``"fluorescence"`` or ``"brightfield"``, from the image's colours.

    DSB2018's fluorescence images are bright nuclei on a dark background (stored as grey); its
    brightfield images have a light background (purple H&E-stained nuclei on pink, or grey). Most
    pixels are background, so the median brightness (the mean of R, G, B) tells them apart: below
    ``FLUORESCENCE_MAX_BRIGHTNESS`` the image is fluorescence. Takes H x W x 3 (or 4: the alpha
    channel of DSB's PNGs is ignored) uint8 images, or H x W grey ones.
    """
    pixels = np.asarray(rgb)
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        brightness = pixels[..., :3].mean(axis=2)
    elif pixels.ndim == 2:
        brightness = pixels
    else:
        raise ValueError(f"image has shape {pixels.shape}, expected H x W x 3, H x W x 4 or H x W")
    return FLUORESCENCE if np.median(brightness) < FLUORESCENCE_MAX_BRIGHTNESS else BRIGHTFIELD
