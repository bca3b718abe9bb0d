"""Run-length encodings: DSB2018 (1-indexed ``start length`` pairs) and COCO uncompressed RLE.

Both run down the columns (column-major, Fortran order), as the two datasets define them.
"""

from __future__ import annotations

import numpy as np


def dsb_encode(mask: np.ndarray) -> str:
    """Binary mask -> DSB2018 ``EncodedPixels``: ``start length`` pairs, 1-indexed, column-major."""
    pixels = np.concatenate([[0], mask.astype(bool).flatten(order="F").astype(np.int8), [0]])
    edges = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1
    starts, ends = edges[::2], edges[1::2]
    return " ".join(f"{s} {e - s}" for s, e in zip(starts, ends, strict=True))


def dsb_decode(encoded: str, height: int, width: int) -> np.ndarray:
    """DSB2018 ``EncodedPixels`` -> uint8 mask of shape (height, width); errors if a run overflows."""
    values = np.array(encoded.split(), dtype=np.int64)
    if values.size % 2:
        raise ValueError("odd number of values: expected start length pairs")
    flat = np.zeros(height * width, dtype=np.uint8)
    for start, length in values.reshape(-1, 2):
        if start < 1 or length < 0 or start - 1 + length > flat.size:
            raise ValueError(f"run {start} {length} lies outside a {height}x{width} image")
        flat[start - 1 : start - 1 + length] = 1
    return flat.reshape((height, width), order="F")


def coco_rle_counts(mask: np.ndarray) -> list[int]:
    """Binary mask -> COCO uncompressed RLE counts (alternating runs, zeros first, column-major)."""
    flat = mask.astype(bool).flatten(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    return [0, *counts] if flat.size and flat[0] else counts


def coco_rle_decode(counts: list[int], height: int, width: int) -> np.ndarray:
    """COCO uncompressed RLE counts -> uint8 mask of shape (height, width)."""
    values = np.zeros(sum(counts), dtype=np.uint8)
    pos = 0
    for i, n in enumerate(counts):
        if i % 2:
            values[pos : pos + n] = 1
        pos += n
    if values.size != height * width:
        raise ValueError(f"counts cover {values.size} pixels, image has {height * width}")
    return values.reshape((height, width), order="F")
