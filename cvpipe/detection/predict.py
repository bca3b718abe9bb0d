"""A registered detector on new images: one row per box (pixels, class, score), the boxes drawn on each image."""

from __future__ import annotations

from typing import Any

import numpy as np

from cvpipe.core.annotate import boxes
from cvpipe.tasks import Predicted

COLUMNS = ("class", "score", "x_min", "y_min", "x_max", "y_max")


def predict(model: Any, images: list[np.ndarray]) -> list[Predicted]:
    """``model``: a loaded :class:`~cvpipe.detection.pyfunc.Detector`; its ``detect`` at the pyfunc's default
    ``conf``, ``iou`` and ``max_det``, so the boxes are the ones it answers."""
    from cvpipe.detection.pyfunc import DEFAULTS

    out = []
    found = model.detect(images, float(DEFAULTS["conf"]), float(DEFAULTS["iou"]), int(DEFAULTS["max_det"]))
    for image, (xyxy, classes, scores) in zip(images, found, strict=True):
        names = [model.names[int(c)] for c in classes]
        rows = [{"class": n, "score": round(float(s), 4)} | dict(zip(COLUMNS[2:], (round(float(v), 2) for v in b), strict=True))
                for n, s, b in zip(names, scores, xyxy, strict=True)]
        labels = [f"{n} {s:.2f}" for n, s in zip(names, scores, strict=True)]
        picture = boxes(image, xyxy.tolist(), labels, [int(c) for c in classes])
        out.append(Predicted(rows, picture, f"{len(rows)} object{'' if len(rows) == 1 else 's'}"))
    return out
