"""A registered U-Net on new images: one row per nucleus in the DSB2018 format (run-length encoding), the
instances overlaid in colours on each image."""

from __future__ import annotations

from typing import Any

import numpy as np

from cvpipe.core.annotate import instances
from cvpipe.data.rle import dsb_encode
from cvpipe.tasks import Predicted

COLUMNS = ("nucleus", "area", "encoded_pixels")


def predict(model: Any, images: list[np.ndarray]) -> list[Predicted]:
    """``model``: a loaded :class:`~cvpipe.segmentation.pyfunc.Segmenter`; its ``labels`` with the instance settings
    it was evaluated with, so the nuclei are the ones it answers."""
    out = []
    for image, labels in zip(images, model.labels(images), strict=True):
        count = int(labels.max())
        rows = [{"nucleus": k, "area": int((labels == k).sum()), "encoded_pixels": dsb_encode(labels == k)} for k in range(1, count + 1)]
        out.append(Predicted(rows, instances(image, labels), f"{count} nucle{'us' if count == 1 else 'i'}"))
    return out
