"""From per-pixel probabilities to nuclei: threshold, split touching nuclei, drop fragments.

The foreground is the thresholded probability. Touching nuclei are one blob there; the distance
transform of the blob has one peak per nucleus, and a watershed of the negated distance from those
peaks cuts the blob along its necks (scikit-image, as the DSB2018 kernels did). With a border
channel the peaks are found on the foreground minus the predicted contact pixels, which separates
the nuclei more reliably (the flooding then meets on the contact pixels); the watershed still fills the
whole foreground. Pieces smaller than
``min_area`` pixels are dropped and the rest relabelled 1..n. A long nucleus has a flat ridge of
distances where peaks ``min_distance`` apart would cut it in pieces; ``smooth`` (a Gaussian sigma on
the distance before its peaks are found) keeps it whole, at the price of merging some small touching
nuclei (on the sample, 0.756 against 0.782 with ``smooth: 1``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from cvpipe.core.params import check_keys, mapping, number


@dataclass(frozen=True)
class InstanceConfig:
    threshold: float = 0.5  # foreground where the probability is above this
    border_threshold: float = 0.5  # with a border channel: contact where its probability is above this
    min_distance: int = 3  # pixels between two nucleus centres (distance-transform peaks)
    smooth: float = 0.0  # Gaussian sigma on the distance before its peaks are found: > 0 keeps long nuclei whole
    min_area: int = 15  # pieces smaller than this many pixels are dropped

    def __post_init__(self) -> None:
        number(self.threshold, "threshold", above=0, below=1)
        number(self.border_threshold, "border_threshold", above=0, below=1)
        number(self.min_distance, "min_distance", integer=True, minimum=1)
        number(self.min_area, "min_area", integer=True, minimum=0)
        number(self.smooth, "smooth", minimum=0)

    @classmethod
    def from_params(cls, section: dict | None) -> InstanceConfig:
        section = dict(mapping(section or {}, ""))
        check_keys(section, cls.__dataclass_fields__)
        return cls(**section)

    def record(self) -> dict:
        return asdict(self)


def instances(probs: np.ndarray, config: InstanceConfig) -> np.ndarray:
    """C x H x W probabilities (foreground, optionally contact) -> int32 labels, 0 background, 1..n nuclei."""
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    foreground = probs[0] > config.threshold
    if not foreground.any():
        return np.zeros(foreground.shape, dtype=np.int32)
    cores = foreground & (probs[1] <= config.border_threshold) if probs.shape[0] > 1 else foreground
    distance = ndimage.distance_transform_edt(cores)
    blobs, _ = ndimage.label(cores)
    # a long nucleus has a flat ridge of distances with a peak every min_distance; smoothing rounds it to one
    landscape = ndimage.gaussian_filter(distance, config.smooth) if config.smooth else distance
    peaks = peak_local_max(landscape, min_distance=config.min_distance, labels=blobs, exclude_border=False)
    markers = np.zeros(foreground.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # a core without a peak of its own (peak_local_max keeps one of two equal maxima) still seeds a nucleus
    seeded = np.unique(blobs[tuple(peaks.T)])
    values, firsts = np.unique(blobs.ravel(), return_index=True)
    for k, first in zip(values, firsts, strict=True):
        if k and k not in seeded:
            markers.flat[first] = markers.max() + 1
    # flooded on the cores' distance: contact pixels (distance 0) are the ridges between neighbours
    labels = watershed(-distance, markers, mask=foreground)
    return relabel(labels, config.min_area)


def relabel(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Drop labels smaller than ``min_area`` pixels; number the rest 1..n in order of first pixel."""
    areas = np.bincount(labels.ravel())
    keep = areas >= max(min_area, 1)
    keep[0] = False
    values, firsts = np.unique(labels.ravel(), return_index=True)  # first appearance, row-major
    kept = keep[values]
    order = np.zeros(len(areas), dtype=np.int32)
    # numbered by first pixel, so the numbering does not depend on the order of the watershed's markers
    order[values[kept][np.argsort(firsts[kept], kind="stable")]] = np.arange(1, kept.sum() + 1)
    return order[labels]
