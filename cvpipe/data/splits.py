"""Stable splits: an image's split depends on its path alone, so adding images moves none."""

from __future__ import annotations

import hashlib

from cvpipe.core.errors import ParamsError


def unit_hash(text: str) -> float:
    """A number in [0, 1) fixed by ``text``."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big") / 2**64


def check_fraction(value: float, what: str = "val_fraction") -> float:
    """``value`` if it is a fraction in [0, 1); ``what`` is the params key named by the error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ParamsError(what, f"is {value!r}; it must be a number in [0, 1)")
    return value


def folds(indices, k: int, seed: int) -> list:
    """``indices`` (a 1-D numpy array) shuffled by ``seed`` and cut into ``k`` disjoint folds of near-equal size, each
    sorted (out-of-fold predictions: a model trained on all folds but one predicts that one)."""
    import numpy as np

    if len(indices) < k:
        raise ValueError(f"{len(indices)} images cannot make {k} folds")
    shuffled = np.random.default_rng(seed).permutation(np.asarray(indices))
    return [np.sort(part) for part in np.array_split(shuffled, k)]
