"""Detection metrics on plain arrays: box IoU, COCO-style average precision per class, and a
detection confusion matrix with a background row and column.

Boxes are ``(N, 4)`` arrays of ``x_min, y_min, x_max, y_max`` in pixels. A class with no object in
the evaluated split has no AP: it is reported as absent (``None``), never filled with the mean as
ultralytics does (its ``maps``), and means are taken over the classes present.

Crowd regions (COCO's ``iscrowd``) are no objects: a detection that matches no object but lies on a
crowd region of its class (intersection over the detection's area at the IoU threshold or more, as
COCO's evaluation measures it) is ignored, neither a true nor a false detection.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

IOU_THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)  # COCO's 0.50:0.05:0.95
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCO's 101-point interpolation


@dataclass(frozen=True)
class ImageResult:
    """One image: its true boxes and classes, and the predicted boxes, classes and scores."""

    true_boxes: np.ndarray
    true_classes: np.ndarray
    pred_boxes: np.ndarray
    pred_classes: np.ndarray
    pred_scores: np.ndarray
    crowd_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # crowd regions: detections there are ignored
    crowd_classes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @classmethod
    def of(cls, true_boxes, true_classes, pred_boxes=(), pred_classes=(), pred_scores=(), crowd_boxes=(),
           crowd_classes=()) -> ImageResult:
        def boxes(b) -> np.ndarray:
            return np.asarray(b, dtype=np.float64).reshape(-1, 4)

        def ints(c) -> np.ndarray:
            return np.asarray(c, dtype=np.int64).reshape(-1)

        return cls(boxes(true_boxes), ints(true_classes), boxes(pred_boxes), ints(pred_classes),
                   np.asarray(pred_scores, dtype=np.float64).reshape(-1), boxes(crowd_boxes), ints(crowd_classes))

    def on_crowd(self, boxes: np.ndarray, classes: np.ndarray, threshold: float) -> np.ndarray:
        """Per box, whether it lies on a crowd region of its class: intersection over its own area >= threshold."""
        if not len(self.crowd_classes) or not len(boxes):
            return np.zeros(len(boxes), dtype=bool)
        same = classes[:, None] == self.crowd_classes[None, :]
        return ((box_ioa(boxes, self.crowd_boxes) >= threshold) & same).any(axis=1)

    def class_hits(self, c: int, threshold: float, conf: float = 0.0) -> tuple[np.ndarray, np.ndarray, int]:
        """Class ``c`` at IoU ``threshold``, predictions scoring ``conf`` or more: (hit per prediction, score per
        prediction, highest score first, those on a crowd region left out; objects of the class)."""
        mine = (self.pred_classes == c) & (self.pred_scores >= conf)
        order = np.argsort(-self.pred_scores[mine], kind="stable")
        boxes, scores = self.pred_boxes[mine][order], self.pred_scores[mine][order]
        truth = self.true_boxes[self.true_classes == c]
        hit = greedy_match(box_iou(boxes, truth), threshold) >= 0
        kept = hit | ~self.on_crowd(boxes, np.full(len(boxes), c), threshold)
        return hit[kept], scores[kept], len(truth)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` intersection over union of every box of ``a`` with every box of ``b``."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_ioa(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` intersection of every box of ``a`` with every box of ``b``, over the area of ``a`` (COCO's IoU with
    a crowd region)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)[:, None]
    return np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)


def greedy_match(iou: np.ndarray, threshold: float) -> np.ndarray:
    """For predictions in descending score order (the rows of ``iou``), the true box each one takes:
    the unmatched one it overlaps most, at ``threshold`` or more; -1 for none."""
    taken = np.zeros(iou.shape[1], dtype=bool)
    out = np.full(iou.shape[0], -1, dtype=np.int64)
    for p in range(iou.shape[0]):
        candidates = np.where(taken, -1.0, iou[p])
        if candidates.size and candidates.max() >= threshold:
            out[p] = int(candidates.argmax())
            taken[out[p]] = True
    return out


def confusion_matrix(images: Iterable[ImageResult], num_classes: int, conf: float, iou: float) -> np.ndarray:
    """``(C + 1, C + 1)`` counts: true class on the rows, predicted class on the columns, background last.

    Predictions scoring at least ``conf`` take, highest score first, the unmatched true box they
    overlap most (at IoU ``iou`` or more, whatever its class): ``[true, predicted]``. A prediction that
    takes none (a false detection, or a second detection of an object already taken) counts in the
    background row, unless it lies on a crowd region of its class (then it is not counted); a true box
    that no prediction takes (a missed object) in the background column.
    """
    bg = num_classes
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for im in images:
        keep = im.pred_scores >= conf
        order = np.argsort(-im.pred_scores[keep], kind="stable")
        boxes, classes = im.pred_boxes[keep][order], im.pred_classes[keep][order]
        taken = greedy_match(box_iou(boxes, im.true_boxes), iou)
        crowd = im.on_crowd(boxes, classes, iou)
        for p, t in enumerate(taken):
            if t >= 0 or not crowd[p]:
                matrix[im.true_classes[t] if t >= 0 else bg, classes[p]] += 1
        missed = np.setdiff1d(np.arange(len(im.true_classes)), taken[taken >= 0])
        np.add.at(matrix, (im.true_classes[missed], bg), 1)
    return matrix


@dataclass(frozen=True)
class ClassAP:
    """AP of one class at each IoU threshold; ``objects`` 0 means the class is absent (AP None)."""

    objects: int
    ap: tuple[float, ...] | None  # per IoU_THRESHOLDS

    @property
    def ap50(self) -> float | None:
        return None if self.ap is None else self.ap[0]

    @property
    def ap50_95(self) -> float | None:
        return None if self.ap is None else float(np.mean(self.ap))


@dataclass(frozen=True)
class DetectionScores:
    """Per-class AP and the means over the classes present in the split."""

    per_class: dict[str, ClassAP] = field(default_factory=dict)

    @property
    def present(self) -> list[str]:
        return [name for name, c in self.per_class.items() if c.ap is not None]

    @property
    def absent(self) -> list[str]:
        return [name for name, c in self.per_class.items() if c.ap is None]

    def mean(self, attr: str) -> float | None:
        values = [getattr(self.per_class[n], attr) for n in self.present]
        return float(np.mean(values)) if values else None


def average_precision(tp: np.ndarray, scores: np.ndarray, objects: int, weights: np.ndarray | None = None) -> float:
    """COCO's AP of one class at one IoU: precision made non-increasing, read at 101 recall points. ``weights``: how
    many times each prediction counts (its image's count in a bootstrap resample; all 1 when None)."""
    if objects == 0:
        raise ValueError("no objects: the class is absent, it has no AP")
    order = np.argsort(-scores, kind="stable")
    if weights is None:
        hits, counts = np.cumsum(tp[order]), np.arange(1, len(tp) + 1)
    else:
        counted = order[weights[order] > 0]
        hits, counts = np.cumsum(tp[counted] * weights[counted]), np.cumsum(weights[counted])
    if len(hits) == 0:
        return 0.0  # nothing predicted: no recall at all
    recall = hits / objects
    precision = np.maximum.accumulate((hits / counts)[::-1])[::-1]
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    return float(np.mean(np.where(at < len(precision), precision[np.minimum(at, len(precision) - 1)], 0.0)))


@dataclass(frozen=True)
class Matched:
    """What :func:`detection_scores` matches, done once: per class and IoU threshold, every prediction of the split
    (those on a crowd region left out) with its hit, its score and the image it belongs to; and the objects of each
    class per image. Scoring a resample of the images (the promotion gate's bootstrap) reuses it."""

    hits: tuple[tuple[np.ndarray, ...], ...]  # [class][threshold] -> hit (0/1) per prediction
    scores: tuple[tuple[np.ndarray, ...], ...]  # [class][threshold] -> score per prediction
    owners: tuple[tuple[np.ndarray, ...], ...]  # [class][threshold] -> image index per prediction
    objects: np.ndarray  # (images, classes)

    @property
    def images(self) -> int:
        return int(self.objects.shape[0])


def match(images: Sequence[ImageResult], num_classes: int, thresholds: np.ndarray = IOU_THRESHOLDS) -> Matched:
    """Each image's predictions matched within each class, highest score first, at each threshold."""
    objects = np.array([np.bincount(im.true_classes, minlength=num_classes)[:num_classes] for im in images],
                       dtype=np.int64).reshape(len(images), num_classes)
    hits, scores, owners = [], [], []
    for c in range(num_classes):
        by_threshold = [[im.class_hits(c, float(t)) for im in images] if objects[:, c].any() else [] for t in thresholds]
        hits.append(tuple(np.concatenate([h for h, _, _ in row]).astype(np.float64) if row else np.zeros(0) for row in by_threshold))
        scores.append(tuple(np.concatenate([s for _, s, _ in row]) if row else np.zeros(0) for row in by_threshold))
        owners.append(tuple(np.repeat(np.arange(len(row)), [len(h) for h, _, _ in row]) if row else np.zeros(0, np.int64)
                            for row in by_threshold))
    return Matched(tuple(hits), tuple(scores), tuple(owners), objects)


def scores_of(matched: Matched, names: Sequence[str], sample: np.ndarray | None = None) -> DetectionScores:
    """AP per class and IoU threshold over the images of ``sample`` (indices, repeats counting as many times;
    all images once when None)."""
    weights = None if sample is None else np.bincount(sample, minlength=matched.images).astype(np.float64)
    objects = matched.objects.sum(0) if weights is None else (matched.objects * weights[:, None]).sum(0)
    per_class: dict[str, ClassAP] = {}
    for c, name in enumerate(names):
        if objects[c] == 0:
            per_class[name] = ClassAP(0, None)
            continue
        aps = tuple(average_precision(hit, score, objects[c], None if weights is None else weights[owner])
                    for hit, score, owner in zip(matched.hits[c], matched.scores[c], matched.owners[c], strict=True))
        per_class[name] = ClassAP(int(objects[c]), aps)
    return DetectionScores(per_class)


def detection_scores(images: Sequence[ImageResult], names: Sequence[str], thresholds: np.ndarray = IOU_THRESHOLDS) -> DetectionScores:
    """AP per class (and IoU threshold) over ``images``, matching within each class, highest score first."""
    return scores_of(match(images, len(names), thresholds), names)
