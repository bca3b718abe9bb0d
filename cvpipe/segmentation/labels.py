"""Nucleus masks most likely wrong: out-of-fold U-Net predictions against the labelled masks.

Every ``stage1_train`` image (whatever its train, val or holdout split) is predicted by a model that never saw it:
the images are dealt into folds and each fold is predicted by a U-Net trained, as the dataset's config says, on the
other folds (its best epoch chosen by their own loss, so that no held-out mask steers it). Its foreground
probabilities become instances as the served model makes them (:func:`cvpipe.segmentation.instances.instances`), with
``InstanceConfig``'s defaults: the stage hands a task its ``labels`` settings only, not ``segmentation.evaluate``.
Two kinds of suspect, both scored in [0, 1] (higher: more likely wrong) and ranked together:

- ``missing mask``: a nucleus the models find that no mask covers (a mask deleted or never drawn). Each connected part
  of the predicted nuclei farther than ``MARGIN`` pixels from every labelled mask (so that a predicted outline a
  little wider than its mask is not a suspect) is a suspect when it has at least ``min_area`` pixels (touching
  predicted instances form one part: one place for a person to fix). Score: its mean foreground probability times
  its area relative to half the dataset's median mask area (capped at 1: :data:`FULL_AREA`), so a confident
  nucleus-sized blob outranks a sliver beside a labelled nucleus, while a small or cut-off nucleus still counts.
- ``mask without nucleus``: a labelled mask that no predicted instance matches at IoU above 0.5 (a hit as the DSB
  score counts one; :mod:`cvpipe.segmentation.metrics`), such as a mask drawn on background or on the wrong place.
  Score: 1 minus the mean foreground probability over the mask's pixels, so a mask on what the models call background
  outranks a real nucleus the models only outlined badly (merged with a neighbour, say).

Both kinds also list nuclei the models get wrong (a dim nucleus missed, debris taken for one): the queue is for a
person to look at, most likely label errors first.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cvpipe.segmentation.metrics import iou_matrix

MISSING_MASK = "missing mask"
MASK_WITHOUT_NUCLEUS = "mask without nucleus"
MARGIN = 2  # pixels around a labelled mask where a predicted nucleus still counts as that mask's
MATCH_IOU = 0.5  # a mask is found when a predicted instance's IoU with it is above this (DSB's lowest threshold)
FULL_AREA = 0.5  # a missing-mask part this share of the median labelled nucleus, or larger, scores its full probability
PICTURE_MIN = 256  # pixels of a picture's shorter side: small images are enlarged (nearest) to read


@dataclass(frozen=True)
class Finding:
    """One suspect region of one image: its kind, the mask's label (1-based, in mask-file order; 0 for a missing
    mask), its centre (x, y), area in pixels, bounding box (x0, y0, x1, y1), mean foreground probability and score."""

    kind: str
    mask: int
    x: int
    y: int
    area: int
    box: tuple[int, int, int, int]
    probability: float
    score: float


def _region(region: np.ndarray, offset: tuple[slice, slice]) -> tuple[int, int, int, int, tuple[int, int, int, int]]:
    """Centre (x, y), area and box of a boolean region cut out at ``offset`` (the slices of its image)."""
    ys, xs = np.nonzero(region)
    ys, xs = ys + offset[0].start, xs + offset[1].start
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return round(float(xs.mean())), round(float(ys.mean())), len(xs), box


def missing_masks(truth: np.ndarray, pred: np.ndarray, foreground: np.ndarray, min_area: int,
                  typical_area: float) -> list[Finding]:
    """Connected parts of the predicted nuclei (``pred``) more than :data:`MARGIN` pixels from every labelled mask
    (``truth``) and at least ``min_area`` pixels large, scored by mean ``foreground`` probability x min(1, area /
    (:data:`FULL_AREA` x ``typical_area``))."""
    covered = truth > 0
    if MARGIN and covered.any():
        covered = ndimage.binary_dilation(covered, iterations=MARGIN)
    # touching instances are one part: watershed may cut one unlabelled nucleus in two, and a person fixes a place once
    parts, _ = ndimage.label((pred > 0) & ~covered)
    found = []
    for label, where in enumerate(ndimage.find_objects(parts), start=1):
        part = parts[where] == label
        if part.sum() < max(min_area, 1):
            continue
        x, y, area, box = _region(part, where)
        p = float(foreground[where][part].mean())
        found.append(Finding(MISSING_MASK, 0, x, y, area, box, p, p * min(1.0, area / max(FULL_AREA * typical_area, 1.0))))
    return found


def unfound_masks(truth: np.ndarray, pred: np.ndarray, foreground: np.ndarray) -> list[Finding]:
    """Labelled masks (``truth``) that no predicted instance (``pred``) matches at IoU above :data:`MATCH_IOU`,
    scored by 1 - their mean ``foreground`` probability."""
    labels = np.unique(truth[truth > 0])
    if not len(labels):
        return []
    iou = iou_matrix(truth, pred)
    best = iou.max(axis=1) if iou.shape[1] else np.zeros(len(labels))
    objects = ndimage.find_objects(truth)
    found = []
    for label, overlap in zip(labels.tolist(), best.tolist(), strict=True):
        if overlap > MATCH_IOU:
            continue
        where = objects[label - 1]
        region = truth[where] == label
        x, y, area, box = _region(region, where)
        p = float(foreground[where][region].mean())
        found.append(Finding(MASK_WITHOUT_NUCLEUS, label, x, y, area, box, p, 1.0 - p))
    return found


def typical_area(label_images: Sequence[np.ndarray]) -> float:
    """The median area in pixels of the labelled masks of ``label_images`` (1 where there is none)."""
    areas = [np.bincount(labels.ravel())[1:] for labels in label_images]
    every = np.concatenate(areas) if areas else np.zeros(0)
    every = every[every > 0]
    return float(np.median(every)) if len(every) else 1.0


def findings(truth: np.ndarray, pred: np.ndarray, foreground: np.ndarray, min_area: int, typical: float) -> list[Finding]:
    """Both kinds of suspect in one image, most likely wrong first (ties: by kind, then position)."""
    both = missing_masks(truth, pred, foreground, min_area, typical) + unfound_masks(truth, pred, foreground)
    return sorted(both, key=lambda f: (-f.score, f.kind, f.y, f.x))


def out_of_fold(images: list[np.ndarray], label_images: list[np.ndarray], folds: list[np.ndarray], config, device,
                instance_config) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(position, predicted instances, foreground probability) of every image in ``folds`` (positions into
    ``images``), each from the U-Net trained on the other folds and watching their loss; fold by fold."""
    from cvpipe.segmentation.data import targets
    from cvpipe.segmentation.fit import fit, predict_probs
    from cvpipe.segmentation.instances import instances

    for n, held in enumerate(folds):
        rest = np.sort(np.concatenate([f for m, f in enumerate(folds) if m != n]))
        train = ([images[k] for k in rest], [targets(label_images[k], config.border) for k in rest])
        model = fit(train, train, config, device).model
        for k in held.tolist():
            probs = predict_probs(model, images[k], config.spec, config.input_mode, config.input_size, device)
            yield k, instances(probs, instance_config), probs[0]


def picture(image: np.ndarray, truth: np.ndarray, finding: Finding, text: str) -> np.ndarray:
    """The image with its labelled masks tinted and the suspect boxed (red: missing mask, orange: mask without
    nucleus), enlarged to at least ``PICTURE_MIN`` pixels a side, under a band with ``text`` (a band of its own: a
    caption drawn on the image would hide a suspect at its top)."""
    from PIL import Image, ImageDraw

    from cvpipe.core.annotate import boxes, font, instances

    scale = max(1, -(-PICTURE_MIN // min(image.shape[:2])))
    tinted = instances(image, truth, alpha=0.3).repeat(scale, axis=0).repeat(scale, axis=1)
    x0, y0, x1, y1 = finding.box
    pad = 3
    box = [max(0, x0 - pad) * scale, max(0, y0 - pad) * scale, (x1 + pad) * scale - 1, (y1 + pad) * scale - 1]
    colour = 3 if finding.kind == MISSING_MASK else 1
    drawn = boxes(tinted, [box], [f"score {finding.score:.2f}"], [colour])
    size = max(10, round(min(drawn.shape[:2]) / 16))
    band = Image.new("RGB", (drawn.shape[1], size + 8), (0, 0, 0))
    ImageDraw.Draw(band).text((4, 2), text, fill=(255, 255, 255), font=font(size))
    return np.concatenate([np.asarray(band), drawn])
