"""A mask's area and binary flag (ingest's probe_mask), without sorting its pixels."""

from __future__ import annotations

import numpy as np
import pytest

from cvpipe.data.manifest import mask_area


def by_unique(pixels: np.ndarray) -> tuple[int, bool]:
    """What probe_mask computed before: np.unique's sorted values."""
    values = np.unique(pixels)
    return int(np.count_nonzero(pixels)), bool(values.size == 1 or (values.size == 2 and values[0] == 0))


@pytest.mark.parametrize("values, dtype", [
    ((0, 255), np.uint8), ((0, 1), np.uint8), ((0,), np.uint8), ((255,), np.uint8), ((0, 3, 255), np.uint8),
    ((3, 255), np.uint8), ((0, 1), bool), ((1,), bool), ((0, 65535), np.uint16), ((0, 7, 9), np.uint16),
    ((-1, 0), np.int32), ((-1,), np.int32), ((-1, 4), np.int32), ((0, 4), np.int32),
    ((0.0, 1.0), np.float32), ((0.0, 0.5, 1.0), np.float32), ((0.0, np.nan), np.float32), ((np.nan,), np.float32),
])
def test_mask_area_agrees_with_the_sorted_values(values, dtype):
    rng = np.random.default_rng(0)
    for shape in ((24, 32), (24, 32, 3)):
        pixels = np.asarray(values, dtype=dtype)[rng.integers(0, len(values), shape)]
        assert mask_area(pixels) == by_unique(pixels), (values, dtype, shape)


def test_dsb_masks_are_binary_and_their_area_is_counted():
    mask = np.zeros((96, 128), dtype=np.uint8)
    mask[10:20, 30:45] = 255
    assert mask_area(mask) == (150, True)
    mask[0, 0] = 7  # a second foreground value: not a binary mask
    assert mask_area(mask) == (151, False)
