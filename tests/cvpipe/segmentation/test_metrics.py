"""The DSB2018 metric: hand-made cases, and three independent implementations agreeing on real masks."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from cvpipe.segmentation.metrics import (
    THRESHOLDS,
    ImageScore,
    dsb_score,
    image_score,
    image_score_loop,
    image_type,
    iou_matrix,
    pixel_scores,
)

DSB = Path(__file__).resolve().parents[3].parent / "shared" / "realdata" / "dsb2018_nuclei"
LITERAL_THRESHOLDS = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


def boxes(shape, *rects):
    """A label image with object k + 1 filling rects[k] = (row0, row1, col0, col1); label 0 skips a rect."""
    labels = np.zeros(shape, dtype=np.int32)
    for k, (r0, r1, c0, c1) in enumerate(rects, start=1):
        labels[r0:r1, c0:c1] = k
    return labels


def both_scores(truth, pred):
    """The vectorised score, checked against the loop reference on every hand-made case."""
    result = image_score(truth, pred)
    assert image_score_loop(truth, pred) == pytest.approx(result.score, abs=1e-12)
    return result


def test_thresholds_are_the_competition_values_exactly():
    assert THRESHOLDS.tolist() == LITERAL_THRESHOLDS


def test_perfect_prediction_with_other_label_values_scores_one():
    truth = boxes((20, 20), (0, 5, 0, 5), (10, 15, 10, 18))
    pred = np.where(truth == 1, 40, np.where(truth == 2, 7, 0))
    result = both_scores(truth, pred)
    assert result.score == 1.0
    assert result.tp == (2,) * 10 and result.fp == (0,) * 10 and result.fn == (0,) * 10
    assert (result.matched_true, result.matched_pred) == ((1, 2), (40, 7))
    assert result.false_pred == () and result.missed_true == ()


def test_one_nucleus_missed_out_of_two_scores_half():
    truth = boxes((20, 20), (0, 5, 0, 5), (10, 15, 10, 18))
    pred = np.where(truth == 2, 3, 0)
    result = both_scores(truth, pred)
    assert result.tp == (1,) * 10 and result.fn == (1,) * 10 and result.fp == (0,) * 10
    assert result.score == 0.5
    assert result.missed_true == (1,) and result.matched_pred == (3,)


def test_one_false_positive():
    truth = boxes((20, 20), (0, 5, 0, 5))
    pred = boxes((20, 20), (0, 5, 0, 5), (10, 15, 10, 15))
    result = both_scores(truth, pred)
    assert result.fp == (1,) * 10 and result.score == 0.5
    assert result.false_pred == (2,) and (result.true_count, result.pred_count) == (1, 2)


def test_two_touching_nuclei_predicted_as_one():
    truth = boxes((20, 20), (0, 8, 0, 5), (0, 8, 5, 7))  # 40 and 16 pixels, side by side
    pred = (truth > 0).astype(np.int32)
    big, small = 40, 16
    iou_big = big / (big + small)  # the merged object covers both: the big nucleus is inside it
    assert iou_matrix(truth, pred)[:, 0].tolist() == [iou_big, small / (big + small)]
    # above a threshold: TP 1 (the big one), FP 0, FN 1 (the small one); else TP 0, FP 1, FN 2
    expected = sum(1 / 2 if iou_big > t else 0 / 3 for t in LITERAL_THRESHOLDS) / 10
    result = both_scores(truth, pred)
    assert result.score == pytest.approx(expected, abs=1e-15)
    assert result.tp == (1, 1, 1, 1, 1, 0, 0, 0, 0, 0)  # IoU 0.714...
    assert result.missed_true == (2,)


@pytest.mark.parametrize(("true_pixels", "pred_pixels", "matched"), [(16, 12, 5), (10, 7, 4)])
def test_an_iou_exactly_at_a_threshold_does_not_match(true_pixels, pred_pixels, matched):
    """IoU 12/16 = 0.75 matches at 0.50-0.70 but not 0.75; 7/10 = 0.7 not at 0.70 (needs exact thresholds)."""
    truth = boxes((4, 20), (0, 1, 0, true_pixels))
    pred = boxes((4, 20), (0, 1, 0, pred_pixels))
    assert iou_matrix(truth, pred)[0, 0] == LITERAL_THRESHOLDS[matched]
    result = both_scores(truth, pred)
    assert result.tp == (1,) * matched + (0,) * (10 - matched)
    assert result.score == pytest.approx(matched / 10, abs=1e-15)  # 1.0 where matched, 0/2 elsewhere


def test_empty_cases():
    empty = np.zeros((8, 8), dtype=np.int32)
    blob = boxes((8, 8), (2, 5, 2, 5))
    nothing = both_scores(empty, empty)
    assert nothing.score == 1.0 and nothing.tp == (0,) * 10 and nothing.true_count == nothing.pred_count == 0
    assert both_scores(empty, blob).score == 0.0
    assert both_scores(blob, empty).score == 0.0


def test_iou_matrix_on_non_consecutive_labels_rows_and_columns_in_label_order():
    truth = np.zeros((1, 12), dtype=np.int64)
    truth[0, 0:4], truth[0, 6:10] = 7, 3  # label 3 is right of label 7
    pred = np.zeros((1, 12), dtype=np.int64)
    pred[0, 0:2], pred[0, 2:6], pred[0, 11] = 40, 9, 2
    expected = [[0, 0, 0], [0, 2 / 6, 2 / 4]]  # rows: truth 3, 7; columns: pred 2, 9, 40
    assert iou_matrix(truth, pred).tolist() == expected
    assert iou_matrix(truth.ravel(), pred.ravel()).tolist() == expected  # any equal shapes, 1-D too


def test_iou_matrix_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\)"):
        iou_matrix(np.zeros((4, 5), dtype=int), np.zeros((5, 4), dtype=int))


def test_negative_labels_are_rejected():
    with pytest.raises(ValueError, match="negative"):
        image_score(np.zeros((2, 2), dtype=int), -np.ones((2, 2), dtype=int))


def test_dsb_score_is_the_mean_over_images_and_needs_one():
    truth = boxes((20, 20), (0, 5, 0, 5), (10, 15, 10, 18))
    scores = [image_score(truth, truth), image_score(truth, np.where(truth == 1, 1, 0))]
    assert dsb_score(scores) == 0.75
    with pytest.raises(ValueError, match="no image"):
        dsb_score([])


def test_pixel_scores():
    a = np.zeros((3, 4), dtype=bool)
    b = np.zeros((3, 4), dtype=bool)
    a[0, :4] = True
    b[0, 1:4] = b[1, 1:4] = True  # 4 and 6 pixels, 3 shared
    assert pixel_scores(a, b) == (3 / 7, 6 / 10)
    assert pixel_scores(a, np.zeros_like(a)) == (0.0, 0.0)
    assert pixel_scores(np.zeros_like(a), np.zeros_like(a)) == (1.0, 1.0)


def test_image_type_dark_grey_is_fluorescence_pink_is_brightfield():
    dark = np.full((32, 32, 3), 12, dtype=np.uint8)
    dark[8:14, 8:14] = 230  # bright nuclei
    pink = np.empty((32, 32, 3), dtype=np.uint8)
    pink[:] = (235, 180, 215)
    pink[8:14, 8:14] = (90, 40, 130)  # purple H&E nuclei
    assert image_type(dark) == "fluorescence"
    assert image_type(pink) == "brightfield"
    assert image_type(np.full((32, 32), 220, dtype=np.uint8)) == "brightfield"  # light grey brightfield


def test_image_type_of_real_dsb_images(realdata):
    """DSB stores RGBA PNGs: a dark grey fluorescence image, an H&E one, a light grey brightfield one."""
    expected = {"00071198": "fluorescence", "00ae65c1": "brightfield", "08275a5b": "brightfield"}
    for prefix, kind in expected.items():
        (sample,) = (realdata / "dsb2018_nuclei" / "stage1_train").glob(f"{prefix}*")
        (png,) = (sample / "images").glob("*.png")
        assert image_type(np.asarray(Image.open(png))) == kind, prefix


def kernel_score(labels, y_pred):
    """The classic Kaggle kernel: intersections by np.histogram2d of consecutive labels 0..n."""
    true_objects, pred_objects = len(np.unique(labels)), len(np.unique(y_pred))
    intersection = np.histogram2d(labels.flatten(), y_pred.flatten(), bins=(true_objects, pred_objects))[0]
    area_true = np.histogram(labels, bins=true_objects)[0]
    area_pred = np.histogram(y_pred, bins=pred_objects)[0]
    union = area_true[:, None] + area_pred[None, :] - intersection
    iou = intersection[1:, 1:] / union[1:, 1:]
    precisions = []
    for t in LITERAL_THRESHOLDS:
        matches = iou > t
        tp = np.sum(np.sum(matches, axis=1) == 1)
        fp = np.sum(np.sum(matches, axis=0) == 0)
        fn = np.sum(np.sum(matches, axis=1) == 0)
        precisions.append(tp / (tp + fp + fn))
    return float(np.mean(precisions))


def real_truth(sample: Path) -> np.ndarray:
    masks = sorted((sample / "masks").glob("*.png"))
    labels = np.zeros(np.asarray(Image.open(masks[0])).shape[:2], dtype=np.int32)
    for k, m in enumerate(masks, start=1):
        labels[np.asarray(Image.open(m)) > 0] = k
    return labels


def perturbed(truth: np.ndarray, seed: int) -> np.ndarray:
    """A plausible prediction: nuclei eroded, dilated, shifted or dropped, two neighbours merged, one false blob."""
    rng = np.random.default_rng(seed)
    pred = np.zeros_like(truth)
    for label in range(1, truth.max() + 1):
        mask = truth == label
        action = rng.choice(["keep", "erode", "dilate", "shift", "drop"], p=[0.3, 0.2, 0.2, 0.2, 0.1])
        if action == "erode":
            mask = ndimage.binary_erosion(mask)
        elif action == "dilate":
            mask = ndimage.binary_dilation(mask, iterations=int(rng.integers(1, 3)))
        elif action == "shift":
            mask = np.roll(mask, tuple(rng.integers(-2, 3, size=2)), axis=(0, 1))
        elif action == "drop":
            continue
        pred[mask & (pred == 0)] = label
    for label in range(1, truth.max() + 1):  # merge the first nucleus that touches another with it
        near = np.unique(pred[ndimage.binary_dilation(pred == label, iterations=2)])
        others = near[(near != 0) & (near != label)]
        if (pred == label).any() and others.size:
            pred[pred == others[0]] = label
            break
    background = np.argwhere(ndimage.binary_erosion(truth == 0, iterations=6))
    r, c = background[rng.integers(len(background))]
    pred[r - 3:r + 4, c - 3:c + 4] = truth.max() + 1  # a false blob, well away from every nucleus
    return np.unique(pred, return_inverse=True)[1].reshape(pred.shape)  # consecutive 0..n for the kernel


def test_vectorised_loop_and_kaggle_kernel_agree_on_real_masks():
    if not DSB.is_dir():
        pytest.skip(f"{DSB} is not present on this machine")
    samples = sorted((DSB / "stage1_train").iterdir())
    samples = [s for s in samples if len(list((s / "masks").glob("*.png"))) <= 40][:4]
    assert len(samples) == 4
    scores = []
    for seed, sample in enumerate(samples):
        truth = real_truth(sample)
        pred = perturbed(truth, seed)
        result = image_score(truth, pred)
        scores.append(result.score)
        assert image_score_loop(truth, pred) == pytest.approx(result.score, abs=1e-12), sample.name
        assert kernel_score(truth, pred) == pytest.approx(result.score, abs=1e-12), sample.name
        assert result.false_pred and result.missed_true, sample.name  # the perturbations reached the score
        assert image_score(truth, truth) == ImageScore(1.0, (truth.max(),) * 10, (0,) * 10, (0,) * 10, int(truth.max()),
                                                       int(truth.max()), tuple(range(1, truth.max() + 1)),
                                                       tuple(range(1, truth.max() + 1)), (), ())
    assert min(scores) > 0.2 and max(scores) < 0.95  # partial scores: thresholds in between were exercised
