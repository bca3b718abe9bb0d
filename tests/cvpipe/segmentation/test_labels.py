"""Suspect masks on tiny label images: a nucleus without a mask, a mask without a nucleus, how they rank, and no
suspect where prediction and masks agree."""

import numpy as np
import pytest

from cvpipe.segmentation.labels import (
    MASK_WITHOUT_NUCLEUS,
    MISSING_MASK,
    findings,
    missing_masks,
    picture,
    typical_area,
    unfound_masks,
)


def square(labels: np.ndarray, label: int, y: int, x: int, side: int = 6) -> np.ndarray:
    labels[y : y + side, x : x + side] = label
    return labels


def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks 1 and 2 (2 on background: no prediction there), a predicted nucleus with no mask at (20-25, 4-9);
    probabilities 0.9 on predicted nuclei, 0.05 elsewhere."""
    truth = square(square(np.zeros((30, 30), dtype=np.int32), 1, 2, 2), 2, 12, 20)
    pred = square(square(np.zeros((30, 30), dtype=np.int32), 1, 2, 2), 2, 20, 4)
    return truth, pred, np.where(pred > 0, 0.9, 0.05).astype(np.float32)


def test_a_nucleus_without_a_mask_is_a_missing_mask():
    truth, pred, fg = scene()
    [f] = missing_masks(truth, pred, fg, min_area=10, typical_area=72)
    assert (f.kind, f.mask, f.area, f.box) == (MISSING_MASK, 0, 36, (4, 20, 10, 26))
    assert (f.x, f.y) == (6, 22)  # the mean of 4..9 and 20..25, rounded half to even
    assert f.probability == pytest.approx(0.9) and f.score == pytest.approx(0.9)
    # half the median nucleus scores in full, a quarter of it half; smaller than min_area: no suspect
    assert missing_masks(truth, pred, fg, min_area=10, typical_area=144)[0].score == pytest.approx(0.45)
    assert missing_masks(truth, pred, fg, min_area=37, typical_area=72) == []


def test_an_unlabelled_nucleus_cut_in_two_by_watershed_is_one_suspect():
    truth, pred, fg = scene()
    pred[20:26, 7:10] = 3  # the unlabelled nucleus's right half, another instance
    [f] = missing_masks(truth, pred, fg, min_area=10, typical_area=72)
    assert f.area == 36 and f.box == (4, 20, 10, 26)


def test_a_prediction_a_little_wider_than_its_mask_is_no_suspect():
    truth = square(np.zeros((20, 20), dtype=np.int32), 1, 6, 6)
    pred = square(np.zeros((20, 20), dtype=np.int32), 1, 5, 5, side=8)  # one pixel wider on every side
    assert missing_masks(truth, pred, np.full((20, 20), 0.9), min_area=1, typical_area=36) == []
    assert unfound_masks(truth, pred, np.full((20, 20), 0.9)) == []  # IoU 36 / 64 > 0.5


def test_a_mask_no_prediction_matches_is_a_mask_without_nucleus():
    truth, pred, fg = scene()
    [f] = unfound_masks(truth, pred, fg)
    assert (f.kind, f.mask, f.area, f.box) == (MASK_WITHOUT_NUCLEUS, 2, 36, (20, 12, 26, 18))
    assert f.probability == pytest.approx(0.05) and f.score == pytest.approx(0.95)
    # a badly outlined real nucleus (IoU 0.5, not above) is a suspect too, but with a low score
    half = square(np.zeros((30, 30), dtype=np.int32), 1, 12, 20)
    half[12:15, 20:26] = 0
    half[2:8, 2:8] = 3  # mask 1 found
    [badly] = unfound_masks(truth, half, np.where(half > 0, 0.9, 0.05))
    assert badly.mask == 2 and badly.score == pytest.approx(1 - (18 * 0.9 + 18 * 0.05) / 36)


def test_findings_rank_both_kinds_together_and_agreement_has_none():
    truth, pred, fg = scene()
    ranked = findings(truth, pred, fg, min_area=10, typical=36)
    assert [f.kind for f in ranked] == [MASK_WITHOUT_NUCLEUS, MISSING_MASK]  # 0.95 before 0.9
    assert findings(truth, truth, np.where(truth > 0, 0.9, 0.05), min_area=10, typical=36) == []
    empty = np.zeros((30, 30), dtype=np.int32)
    assert findings(empty, empty, np.zeros((30, 30)), min_area=10, typical=36) == []
    assert [f.kind for f in findings(truth, empty, np.zeros((30, 30)), 10, 36)] == [MASK_WITHOUT_NUCLEUS] * 2


def test_typical_area_is_the_median_mask_area():
    truth, _, _ = scene()
    small = square(np.zeros((30, 30), dtype=np.int32), 1, 0, 0, side=2)
    assert typical_area([truth, small]) == 36 and typical_area([np.zeros((4, 4), dtype=np.int32)]) == 1.0


def test_the_picture_is_enlarged_rgb_with_the_suspect_boxed():
    truth, pred, fg = scene()
    image = np.full((30, 30, 3), 40, dtype=np.uint8)
    [f] = unfound_masks(truth, pred, fg)
    drawn = picture(image, truth, f, "no nucleus? p=0.05")
    band = 17 + 8  # text of 270 / 16 pixels above the picture
    assert drawn.dtype == np.uint8 and drawn.shape == (band + 270, 270, 3)  # 30 px x 9 >= 256
    x0 = (f.box[0] - 3) * 9
    assert tuple(drawn[band + (f.box[1] + f.box[3]) // 2 * 9, x0]) == (255, 127, 14)  # the box's left side, in orange
    assert drawn[:band].max() == 255 and drawn[band - 1].max() == 0  # white text on its own black band
