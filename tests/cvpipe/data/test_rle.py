import numpy as np
import pytest
from PIL import Image

from cvpipe.data.rle import coco_rle_counts, coco_rle_decode, dsb_decode, dsb_encode


def test_dsb_encoding_is_column_major_and_one_indexed():
    mask = np.zeros((3, 4), dtype=np.uint8)
    mask[0, 0] = mask[1, 0] = 1  # first column, rows 0-1: pixels 1 and 2
    mask[2, 1] = 1  # second column, last row: pixel 6
    assert dsb_encode(mask) == "1 2 6 1"


@pytest.mark.parametrize("seed", range(5))
def test_dsb_round_trip(seed):
    mask = np.random.default_rng(seed).random((17, 23)) > 0.6
    assert np.array_equal(dsb_decode(dsb_encode(mask), 17, 23), mask)


def test_dsb_run_past_the_image_is_an_error():
    with pytest.raises(ValueError, match="outside a 2x2 image"):
        dsb_decode("3 5", 2, 2)


@pytest.mark.parametrize("seed", range(5))
def test_coco_counts_round_trip_and_start_with_zeros(seed):
    mask = np.random.default_rng(seed).random((9, 11)) > 0.5
    mask[0, 0] = True
    counts = coco_rle_counts(mask)
    assert counts[0] == 0 and sum(counts) == mask.size
    assert np.array_equal(coco_rle_decode(counts, 9, 11), mask)


def test_official_dsb_encodings_match_the_mask_files(realdata):
    """The Kaggle run-length encodings decode to exactly one of the sample's mask PNGs each."""
    root = realdata / "dsb2018_nuclei"
    lines = (root / "stage1_train_labels.excerpt.csv").read_text().splitlines()[1:]
    assert lines
    for line in lines:
        image_id, encoded = line.split(",")
        masks = sorted((root / "stage1_train" / image_id / "masks").glob("*.png"))
        h, w = np.asarray(Image.open(masks[0])).shape
        decoded = dsb_decode(encoded, h, w)
        matches = [m for m in masks if np.array_equal(np.asarray(Image.open(m)) > 0, decoded > 0)]
        assert len(matches) == 1, f"{image_id}: encoding matches {len(matches)} masks"
