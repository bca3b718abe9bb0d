"""How sure a held-out figure is: bootstrap intervals over images, for one model and for two models paired.

A task's score of a model on a split comes with a *rescorer* (:class:`cvpipe.tasks.Scores`): the same metric on
any resample of the split's images, given as an index array with repeats. Resampling images, not boxes or
pixels, keeps what an image contributes together (its objects, its nuclei), so the interval is about the
next images of the same kind, which is what a promotion bets on.

The gate's comparison is *paired*: both models are rescored on the same resample, and the interval is the
one of their difference. Paired, the images that are easy or hard for both cancel, so the interval is
narrower than two separate ones and a real improvement on a small split can still show. The resamples
come from ``numpy.random.default_rng(seed)``: the same inputs give the same interval on every machine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Rescore = Callable[[np.ndarray], float]  # the primary metric on images[sample] (sample: indices, with repeats)


@dataclass(frozen=True)
class BootstrapSettings:
    """``registry.confidence`` (two-sided), ``registry.resamples`` and ``registry.seed``."""

    confidence: float = 0.95
    resamples: int = 1000
    seed: int = 0

    def record(self) -> dict[str, float | int]:
        return {"confidence": self.confidence, "resamples": self.resamples, "seed": self.seed}


@dataclass(frozen=True)
class Interval:
    """A figure (a metric, or a difference of two) on the split's images, and its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    resamples: int
    images: int

    def record(self, digits: int = 6) -> dict[str, float | int]:
        r = lambda v: round(float(v), digits)  # noqa: E731
        return {"estimate": r(self.estimate), "low": r(self.low), "high": r(self.high), "confidence": self.confidence,
                "resamples": self.resamples, "images": self.images}

    def text(self, signed: bool = False) -> str:
        f = "{:+.4f}" if signed else "{:.4f}"
        return (f"{f.format(self.estimate)} ({self.confidence:.0%} CI {f.format(self.low)} to {f.format(self.high)}, "
                f"{self.resamples} resamples of {self.images} images)")


def resamples(images: int, settings: BootstrapSettings) -> np.ndarray:
    """``(resamples, images)`` indices drawn with replacement, the same for the same seed on every machine."""
    if images < 1:
        raise ValueError("no image to resample")
    return np.random.default_rng(settings.seed).integers(0, images, size=(settings.resamples, images))


def _bounds(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def interval(estimate: float, rescore: Rescore, images: int, settings: BootstrapSettings) -> Interval:
    """The bootstrap interval of one model's metric on ``images`` images (``estimate``: its value on all of them)."""
    values = np.array([rescore(sample) for sample in resamples(images, settings)], dtype=np.float64)
    return Interval(estimate, *_bounds(values, settings.confidence), settings.confidence, settings.resamples, images)


def paired_difference(new: tuple[float, Rescore], old: tuple[float, Rescore], images: Sequence[str],
                      old_images: Sequence[str], settings: BootstrapSettings) -> Interval:
    """The interval of ``new - old`` (each: its metric on all images and its rescorer), both rescored on the same
    resamples of the same images; refused when the two were not scored on the same images in the same order."""
    if list(images) != list(old_images):
        raise ValueError(f"the two models were scored on different images ({len(images)} and {len(old_images)}); "
                         "a paired comparison needs the same ones")
    deltas = np.array([new[1](s) - old[1](s) for s in resamples(len(images), settings)], dtype=np.float64)
    return Interval(new[0] - old[0], *_bounds(deltas, settings.confidence), settings.confidence, settings.resamples,
                    len(images))
