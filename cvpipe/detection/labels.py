"""Detection labels most likely wrong: out-of-fold detections compared with the labelled boxes.

Every image of the converted YOLO folder, whatever its split, is predicted by a detector that never saw it: the images
are dealt into folds (:func:`cvpipe.data.splits.folds`) and each fold is predicted by a YOLO trained, as the dataset's
section says, on the others (its best epoch picked on a share of those others, ``val_fraction``, so that no held-out
label steers it). Per image, the labelled boxes and the detections (down to a confidence of :data:`PREDICT_CONF`) are
compared at IoU :data:`IOU`, and three kinds of suspect come out (:func:`review_image`):

- ``unfound box``: a labelled box that no detection of any class overlapping it reaches :data:`CONFIDENT` on (a box
  drawn where there is no object, or on the wrong spot). Score: 1 - the best confidence of a detection overlapping it
  (so always above 1 - :data:`CONFIDENT`).
- ``unlabelled object``: a detection of :data:`CONFIDENT` or more that overlaps no labelled box (an object nobody
  boxed); of several such detections on one spot (non-maximum suppression is per class) the most confident. Score:
  its confidence.
- ``class``: a labelled box whose most confident overlapping detection (at least :data:`CONFIDENT`) is of another
  class. Score: that detection's confidence.

Higher scores are likelier errors; all three are on one scale of confidence, so one queue ranks them together. The
floor :data:`CONFIDENT` is ``detection.evaluate.conf``'s default: a detection counts as one from there. On a
well-trained detector a right box is found at a confidence near 1 (score near 0, not flagged), a deleted box is
found again at a high confidence and a changed class is called by its real one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cvpipe.detection.metrics import box_iou

UNFOUND, UNLABELLED, CLASS = "unfound box", "unlabelled object", "class"
CONFIDENT = 0.25  # a detection counts from this confidence
IOU = 0.5  # a detection and a labelled box are the same object from this IoU
PREDICT_CONF = 0.001  # detections kept while predicting: an unfound box's score needs the weak ones too
CODE_VERSION = 1  # in the fold models' cache keys: bump when this changes what they are trained on


@dataclass(frozen=True)
class BoxSuspect:
    """One suspect box of an image: its kind, the box (``xyxy`` pixels: the labelled one, or the detection for an
    unlabelled object), the labelled class (None: unlabelled), the detected class (None: unfound), the confidence the
    evidence quotes and the score (higher: likelier wrong)."""

    problem: str
    box: tuple[float, float, float, float]
    given: int | None
    found: int | None
    confidence: float
    score: float


def review_image(true_boxes: np.ndarray, true_classes: np.ndarray, pred_boxes: np.ndarray, pred_classes: np.ndarray,
                 pred_scores: np.ndarray, confident: float = CONFIDENT, iou: float = IOU) -> list[BoxSuspect]:
    """The suspects of one image (see the module's docstring): labelled boxes in their order, then unlabelled
    objects, most confident first."""
    true_boxes, pred_boxes = np.asarray(true_boxes, float).reshape(-1, 4), np.asarray(pred_boxes, float).reshape(-1, 4)
    pred_scores, pred_classes = np.asarray(pred_scores, float).reshape(-1), np.asarray(pred_classes, int).reshape(-1)
    near = box_iou(true_boxes, pred_boxes) >= iou  # (labelled, detected)
    out = []
    for t, (box, given) in enumerate(zip(true_boxes, np.asarray(true_classes, int).reshape(-1), strict=True)):
        scores = np.where(near[t], pred_scores, -1.0)
        best = int(np.argmax(scores)) if len(scores) else -1
        top = float(scores[best]) if best >= 0 and scores[best] >= 0 else 0.0
        if top < confident:
            out.append(BoxSuspect(UNFOUND, _corners(box), int(given), None, top, 1.0 - top))
        elif pred_classes[best] != given:
            out.append(BoxSuspect(CLASS, _corners(box), int(given), int(pred_classes[best]), top, top))
    lonely = np.flatnonzero((pred_scores >= confident) & ~near.any(axis=0))
    kept: list[int] = []
    for k in lonely[np.argsort(-pred_scores[lonely], kind="stable")]:
        if kept and (box_iou(pred_boxes[[k]], pred_boxes[kept]) >= iou).any():
            continue  # the same unboxed object, found again as another class
        kept.append(int(k))
        out.append(BoxSuspect(UNLABELLED, _corners(pred_boxes[k]), None, int(pred_classes[k]), float(pred_scores[k]),
                              float(pred_scores[k])))
    return out


def _corners(box: Sequence[float]) -> tuple[float, float, float, float]:
    return tuple(round(float(v), 2) for v in box)  # type: ignore[return-value]


def ranked(per_image: Sequence[Sequence[BoxSuspect]]) -> list[tuple[int, BoxSuspect]]:
    """(image index, suspect) over all images, highest score first (ties: in image order, then in the image's)."""
    flat = [(k, s) for k, suspects in enumerate(per_image) for s in suspects]
    return sorted(flat, key=lambda pair: -pair[1].score)


def evidence(suspect: BoxSuspect, names: Sequence[str]) -> str:
    """What a person reads in queue.csv: the class, the box in pixels and the confidence."""
    at = "({:.0f}, {:.0f}, {:.0f}, {:.0f}) px".format(*suspect.box)
    if suspect.problem == UNFOUND:
        return (f"labelled {names[suspect.given]} at {at}; no model that never saw it finds it "
                f"(best overlapping confidence {suspect.confidence:.2f})")
    if suspect.problem == UNLABELLED:
        return f"no labelled box at {at}; models that never saw it find {names[suspect.found]} (confidence {suspect.confidence:.2f})"
    return (f"labelled {names[suspect.given]} at {at}; models that never saw it say {names[suspect.found]} "
            f"(confidence {suspect.confidence:.2f})")


def caption_of(suspect: BoxSuspect, names: Sequence[str]) -> str:
    """The short label drawn on the suspect box."""
    if suspect.problem == UNFOUND:
        return f"{names[suspect.given]}? nothing found"
    if suspect.problem == UNLABELLED:
        return f"unlabelled {names[suspect.found]}? {suspect.confidence:.2f}"
    return f"{names[suspect.given]}? {names[suspect.found]} {suspect.confidence:.2f}"


def whole_pixels(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """A pixel box rounded to the whole pixels LabelImg stores, inside the image and at least one pixel wide."""
    x0, y0, x1, y1 = (round(float(v)) for v in box)
    x0, x1 = min(max(x0, 0), width - 1), min(max(x1, 1), width)
    y0, y1 = min(max(y0, 0), height - 1), min(max(y1, 1), height)
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


@dataclass(frozen=True)
class QueueImage:
    """What the LabelImg export writes of a suspect's image: its file name and size, its labelled boxes (class name,
    ``xyxy`` pixels) and the unlabelled object the suspect proposes (None for the other kinds)."""

    filename: str
    width: int
    height: int
    boxes: tuple[tuple[str, tuple[float, float, float, float]], ...]
    proposed: tuple[str, tuple[float, float, float, float]] | None = None


def queue_image(file: Path, size: tuple[int, int], true_boxes: np.ndarray, true_classes: np.ndarray, suspect: BoxSuspect,
                names: Sequence[str]) -> QueueImage:
    """The :class:`QueueImage` of one suspect."""
    labelled = tuple((names[int(c)], _corners(b)) for b, c in zip(true_boxes, true_classes, strict=True))
    proposed = (names[suspect.found], suspect.box) if suspect.problem == UNLABELLED else None
    return QueueImage(file.name, size[0], size[1], labelled, proposed)


def labelimg_files(images: Sequence[QueueImage]) -> dict[str, str]:
    """One LabelImg XML per image (by the image's stem, as LabelImg names them): its labelled boxes, then every
    unlabelled object proposed on it, in the order given."""
    from cvpipe.data.labelimg import labelimg_xml

    merged: dict[str, list[QueueImage]] = {}
    for image in images:
        merged.setdefault(image.filename, []).append(image)
    out = {}
    for filename, same in merged.items():
        first = same[0]
        boxes = [*first.boxes, *(q.proposed for q in same if q.proposed is not None)]
        objects = [(name, whole_pixels(box, first.width, first.height), False) for name, box in boxes]
        out[f"{Path(filename).stem}.xml"] = labelimg_xml(filename, first.width, first.height, objects, verified=False)
    return out


def suspect_picture(file: Path, true_boxes: np.ndarray, true_classes: np.ndarray, suspect: BoxSuspect,
                    names: Sequence[str], size: int = 384) -> np.ndarray:
    """The image (its longer side ``size`` pixels) with its other labelled boxes in grey and the suspect box in red,
    captioned with the kind of suspect."""
    from PIL import Image

    from cvpipe.core.annotate import boxes, caption
    from cvpipe.data.pil import open_image

    with open_image(file) as im:
        rgb = im.convert("RGB")
    scale = size / max(rgb.size)
    rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.BILINEAR)
    others = [(b, c) for b, c in zip(true_boxes, true_classes, strict=True) if _corners(b) != suspect.box]
    xyxy = [[v * scale for v in b] for b, _ in others] + [[v * scale for v in suspect.box]]
    labels = [names[int(c)] for _, c in others] + [caption_of(suspect, names)]
    pixels = boxes(np.asarray(rgb), xyxy, labels, [7] * len(others) + [3])
    return caption(pixels, f"{suspect.problem} ({suspect.score:.2f})")


def out_of_fold(data: Any, files: list[Path], folds: list[np.ndarray], config: Any, compute: Any, work: Path,
                ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]]:
    """Detections (boxes, classes, scores, (width, height)) of every file of ``files``, each by the YOLO trained
    on the other folds (``data``: the :class:`~cvpipe.detection.data.YoloSet` the files are from; ``work``: the
    folder ultralytics' runs and training mirrors go under, each removed once its fold is predicted)."""
    from ultralytics import YOLO

    from cvpipe.core.io import remove_dir
    from cvpipe.detection import fit as t
    from cvpipe.detection.data import training_mirror
    from cvpipe.detection.evaluate import Settings, predict_files
    from cvpipe.tasks.training import fingerprint

    dev = t.check_device(compute.device)
    found: list[Any] = [None] * len(files)
    base = fingerprint(data.digest(), asdict(config), t.CODE_VERSION, CODE_VERSION, [f.tolist() for f in folds])
    for n, held in enumerate(folds):
        rest = np.sort(np.concatenate([f for m, f in enumerate(folds) if m != n]))
        key = fingerprint(base, "labels", n)
        mirror, run_dir = work / "yolo-data" / key, work / "yolo-runs" / key
        training_mirror(replace(data, images={"train": [files[i] for i in rest]}), mirror, config.val_fraction)
        trained = t.fit(config, mirror / "data.yaml", run_dir, dev, compute.cpu_threads)
        model = YOLO(str(trained.best), task="detect")
        predicted = predict_files(model, [files[i] for i in held], config.imgsz, dev, Settings(),
                                  conf=PREDICT_CONF, progress=f"fold {n + 1}/{len(folds)}")
        for i, p in zip(held.tolist(), predicted, strict=True):
            found[i] = p
        remove_dir(run_dir)
        remove_dir(mirror)
    return found
