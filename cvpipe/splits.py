"""Stable splits: an image's split depends on its path alone, so adding images moves none."""

from __future__ import annotations

import hashlib


def unit_hash(text: str) -> float:
    """A number in [0, 1) fixed by ``text``."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "big") / 2**64


def check_fraction(value: float, what: str = "val fraction") -> float:
    if not 0 <= value < 1:
        raise ValueError(f"{what} is {value}; it must be in [0, 1)")
    return value
