"""Detection metrics on hand-made fixtures whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from cvpipe.detection.metrics import ImageResult, average_precision, box_iou, confusion_matrix, detection_scores

CAT, DOG = 0, 1
A = [10, 10, 50, 50]  # an object
B = [60, 60, 100, 100]  # another, far from A
NEAR_A = [12, 10, 50, 52]  # IoU with A: 38*40 / (40*40 + 38*42 - 38*40) = 0.9047...


def test_box_iou_by_hand():
    iou = box_iou([A, B], [A, NEAR_A, [30, 10, 70, 50]])
    assert iou[0, 0] == 1.0 and iou[1, 0] == 0.0
    assert iou[0, 1] == pytest.approx(1520 / (1600 + 1596 - 1520))
    assert iou[0, 2] == pytest.approx(800 / (1600 + 1600 - 800))  # half overlapping: 1/3
    assert box_iou(np.zeros((0, 4)), [A]).shape == (0, 1)


def test_confusion_matrix_counts_a_miss_a_false_detection_a_wrong_class_and_a_duplicate():
    images = [
        ImageResult.of([A], [CAT], [NEAR_A], [CAT], [0.9]),  # right
        ImageResult.of([A], [CAT], [], [], []),  # missed
        ImageResult.of([], [], [B], [DOG], [0.8]),  # false detection
        ImageResult.of([A], [DOG], [A], [CAT], [0.7]),  # wrong class: a dog called a cat
        ImageResult.of([A], [CAT], [A, NEAR_A], [CAT, CAT], [0.9, 0.6]),  # a duplicate detection
        ImageResult.of([B], [DOG], [B], [DOG], [0.1]),  # below the confidence: missed
    ]
    m = confusion_matrix(images, num_classes=2, conf=0.25, iou=0.45)
    #                   predicted: cat dog background
    assert m.tolist() == [[2, 0, 1],   # true cat: two found, one missed
                          [1, 0, 1],   # true dog: one called a cat, one missed (low score)
                          [1, 1, 0]]   # background: the duplicate cat, the false dog
    assert m[:2, :].sum() == 5  # every true object once
    assert confusion_matrix(images, 2, conf=0.05, iou=0.45)[DOG, DOG] == 1


@pytest.mark.parametrize(("tp", "scores", "objects", "expected"), [
    ([1], [0.9], 1, 1.0),  # found, nothing else
    ([0, 1], [0.9, 0.8], 1, 0.5),  # a false detection scored above the only true one
    ([1, 0], [0.9, 0.8], 1, 1.0),  # ... scored below it: costs nothing
    ([1], [0.9], 2, 51 / 101),  # half the objects found: precision 1 up to recall 0.5, 51 of 101 points
    ([], [], 3, 0.0),  # nothing predicted
])
def test_average_precision_known_by_hand(tp, scores, objects, expected):
    assert average_precision(np.array(tp, float), np.array(scores, float), objects) == pytest.approx(expected)


def test_an_absent_class_is_absent_not_the_mean():
    images = [ImageResult.of([A, B], [CAT, CAT], [A, B], [CAT, CAT], [0.9, 0.8]),
              ImageResult.of([B], [CAT], [[0, 0, 5, 5]], [DOG], [0.7])]  # a dog predicted, no dog anywhere
    scores = detection_scores(images, ["cat", "dog", "bird"])
    # two of three cats found with precision 1: recall points 0 to 0.66, 67 of 101
    assert scores.per_class["cat"].ap50 == pytest.approx(67 / 101) and scores.per_class["cat"].objects == 3
    assert scores.present == ["cat"] and scores.absent == ["dog", "bird"]
    assert scores.per_class["dog"].ap is None and scores.mean("ap50") == pytest.approx(67 / 101)


def test_ap50_95_averages_the_ten_iou_thresholds():
    # the prediction overlaps at IoU 0.9047: a hit up to the 0.90 threshold, a miss at 0.95
    scores = detection_scores([ImageResult.of([A], [CAT], [NEAR_A], [CAT], [0.9])], ["cat"])
    assert scores.per_class["cat"].ap == (1.0,) * 9 + (0.0,)
    assert scores.per_class["cat"].ap50_95 == pytest.approx(0.9) and scores.mean("ap50_95") == pytest.approx(0.9)


def test_each_object_is_matched_once_per_class():
    # two predictions on one cat: the second is a false positive, so precision is 1 then 0.5 at recall 1
    scores = detection_scores([ImageResult.of([A], [CAT], [A, NEAR_A], [CAT, CAT], [0.9, 0.8])], ["cat"])
    assert scores.per_class["cat"].ap50 == 1.0  # the envelope keeps precision 1 up to recall 1
    lower_first = detection_scores([ImageResult.of([A, B], [CAT, CAT], [NEAR_A, A], [CAT, CAT], [0.9, 0.8])], ["cat"])
    assert lower_first.per_class["cat"].ap50 == pytest.approx(51 / 101)  # B never found
