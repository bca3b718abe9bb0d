"""Detection's label-error review on tiny arrays: which boxes are suspect, of what kind, with what score, and the
LabelImg files of the queue."""

from __future__ import annotations

import numpy as np
import pytest

from cvpipe.detection.labels import (
    CLASS,
    UNFOUND,
    UNLABELLED,
    BoxSuspect,
    QueueImage,
    evidence,
    labelimg_files,
    ranked,
    review_image,
    suspect_picture,
    whole_pixels,
)
from cvpipe.sources.voc import labelimg_fast
from tests.conftest import write_image

NAMES = ["roundel", "way out", "platform sign"]
BOX = [10.0, 10.0, 50.0, 50.0]


def review(true, true_classes, pred=(), pred_classes=(), scores=()):
    return review_image(np.array(true, float).reshape(-1, 4), np.array(true_classes), np.array(pred, float).reshape(-1, 4),
                        np.array(pred_classes), np.array(scores, float))


def test_a_box_found_as_its_class_is_not_suspect():
    assert review([BOX], [0], [[11, 11, 50, 49]], [0], [0.9]) == []


def test_a_box_nothing_finds_is_unfound_scored_by_the_best_overlapping_confidence():
    (alone,) = review([BOX], [1])
    assert (alone.problem, alone.given, alone.found, alone.score) == (UNFOUND, 1, None, 1.0)
    (weak,) = review([BOX], [1], [[10, 10, 50, 50], [200, 200, 240, 240]], [1, 1], [0.1, 0.95])[:1]
    assert weak.problem == UNFOUND and weak.confidence == pytest.approx(0.1) and weak.score == pytest.approx(0.9)


def test_a_box_called_another_class_is_a_class_suspect_scored_by_that_confidence():
    (wrong,) = review([BOX], [0], [[10, 10, 50, 50], [10, 10, 49, 50]], [2, 0], [0.8, 0.3])
    assert (wrong.problem, wrong.given, wrong.found, wrong.score) == (CLASS, 0, 2, 0.8)
    assert review([BOX], [0], [[10, 10, 50, 50], [10, 10, 49, 50]], [2, 0], [0.3, 0.8]) == []  # its own class wins


def test_a_confident_detection_on_no_box_is_an_unlabelled_object_once_per_spot():
    found = review([BOX], [0], [[10, 10, 50, 50], [100, 100, 140, 140], [101, 100, 140, 141], [200, 0, 240, 40]],
                   [0, 1, 2, 0], [0.9, 0.7, 0.6, 0.1])
    assert [(s.problem, s.found, s.box, s.score) for s in found] == [(UNLABELLED, 1, (100.0, 100.0, 140.0, 140.0), 0.7)]


def test_an_image_without_boxes_or_detections():
    assert review([], [], [], [], []) == []
    (only,) = review([], [], [[0, 0, 9, 9]], [2], [0.5])
    assert only.problem == UNLABELLED and only.given is None


def test_ranked_highest_score_first_then_in_image_order():
    a, b, c = (BoxSuspect(UNFOUND, (0, 0, 1, 1), 0, None, 0.0, s) for s in (0.5, 0.9, 0.5))
    assert ranked([[a, b], [], [c]]) == [(0, b), (0, a), (2, c)]


def test_the_evidence_names_class_box_in_pixels_and_confidence():
    box = (10.4, 20.6, 50.0, 60.0)
    assert evidence(BoxSuspect(UNLABELLED, box, None, 1, 0.913, 0.913), NAMES) == \
        "no labelled box at (10, 21, 50, 60) px; models that never saw it find way out (confidence 0.91)"
    assert evidence(BoxSuspect(CLASS, box, 0, 2, 0.8, 0.8), NAMES) == \
        "labelled roundel at (10, 21, 50, 60) px; models that never saw it say platform sign (confidence 0.80)"
    assert evidence(BoxSuspect(UNFOUND, box, 2, None, 0.04, 0.96), NAMES).startswith("labelled platform sign at (10, 21, 50, 60) px")


def test_whole_pixels_round_and_stay_inside_the_image():
    assert whole_pixels((9.6, 0.2, 50.4, 40.0000001), 100, 80) == (10, 0, 50, 40)
    assert whole_pixels((-3, -2, 120, 90), 100, 80) == (0, 0, 100, 80)
    assert whole_pixels((99.8, 5, 100.2, 5.1), 100, 80) == (99, 5, 100, 6)  # never empty


def test_one_labelimg_file_per_image_with_its_boxes_and_every_unlabelled_object_queued():
    labelled = (("roundel", (10.0, 10.0, 50.0, 50.0)),)
    queued = [QueueImage("a.JPG", 100, 80, labelled, ("way out", (60.2, 5.0, 90.0, 30.0))),
              QueueImage("a.JPG", 100, 80, labelled, None),
              QueueImage("a.JPG", 100, 80, labelled, ("platform sign", (1.0, 50.0, 20.0, 79.6))),
              QueueImage("b.png", 30, 30, (), None)]
    files = labelimg_files(queued)
    assert list(files) == ["a.xml", "b.xml"]
    a = labelimg_fast(files["a.xml"].encode())  # exactly LabelImg's layout: the project's fast reader takes it
    assert a is not None and (a.filename, a.width, a.height) == ("a.JPG", 100, 80)
    assert [(o.name, o.x_min, o.y_min, o.x_max, o.y_max) for o in a.objects] == [
        ("roundel", 10, 10, 50, 50), ("way out", 60, 5, 90, 30), ("platform sign", 1, 50, 20, 80)]
    assert labelimg_fast(files["b.xml"].encode()).objects == []


def test_the_picture_shows_the_image_enlarged_with_the_suspect_box(tmp_path):
    write_image(tmp_path / "a.png", (100, 50))
    suspect = BoxSuspect(CLASS, (10.0, 10.0, 40.0, 40.0), 0, 1, 0.8, 0.8)
    picture = suspect_picture(tmp_path / "a.png", np.array([[10, 10, 40, 40], [50, 5, 90, 45]], float), np.array([0, 2]),
                              suspect, NAMES)
    assert picture.shape == (192, 384, 3) and picture.dtype == np.uint8
    assert (picture[100, 36:41] == (214, 39, 40)).all(axis=1).any()  # the suspect's outline, red, at its scaled left edge
    assert not (picture[100, 0:30] == (214, 39, 40)).all(axis=1).any()
