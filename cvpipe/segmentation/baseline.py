"""The classical baseline the U-Net must beat: Otsu's threshold, then the distance-transform watershed.

What a DSB2018 notebook tries before any network: the image in grey (brightfield images inverted,
their nuclei being darker than the background), foreground above Otsu's threshold with its holes
filled, and the same split of touching nuclei and the same ``min_area`` as the U-Net's predictions
(:func:`cvpipe.segmentation.instances.instances`), so the two differ only in where the foreground
comes from. Scored on the same held-out images in the same evaluation (``baseline_dsb_score`` in
metrics.json).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cvpipe.segmentation.instances import InstanceConfig, instances
from cvpipe.segmentation.metrics import BRIGHTFIELD, image_type

METHOD = "otsu+watershed"


def foreground(rgb: np.ndarray) -> np.ndarray:
    """H x W bool: pixels brighter than Otsu's threshold (darker, on brightfield images), holes filled."""
    from skimage.filters import threshold_otsu

    pixels = np.asarray(rgb)
    grey = pixels[..., :3].mean(axis=2) if pixels.ndim == 3 else pixels.astype(np.float64)
    if image_type(pixels) == BRIGHTFIELD:
        grey = grey.max() - grey
    if grey.max() == grey.min():  # one flat colour: nothing stands out
        return np.zeros(grey.shape, dtype=bool)
    return ndimage.binary_fill_holes(grey > threshold_otsu(grey))


def segment(rgb: np.ndarray, config: InstanceConfig) -> np.ndarray:
    """int32 labels of the nuclei Otsu + watershed finds, 0 background, 1..n."""
    return instances(foreground(rgb)[None].astype(np.float32), config)
