"""Detection evaluation: our AP against pycocotools on the same predictions, precision and recall
counts, the report files, and the settings' errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cvpipe.core.errors import ParamsError
from cvpipe.detection.evaluate import Settings, coco_evaluate, errors_per_image, precision_recall, write_report
from cvpipe.detection.metrics import ImageResult, detection_scores
from tests.conftest import write_image

NAMES = ["cat", "dog", "bird"]


def noisy_predictions(seed: int, images: int = 40) -> list[ImageResult]:
    """True boxes, and predictions that jitter them, change class now and then, miss some and add false ones."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(images):
        n = int(rng.integers(0, 5))
        xy = rng.uniform(0, 150, (n, 2))
        true = np.hstack([xy, xy + rng.uniform(10, 60, (n, 2))])
        classes = rng.integers(0, 2, n)  # "bird" never occurs: an absent class
        keep = rng.random(n) > 0.15
        pred = true[keep] + rng.normal(0, 2.5, (int(keep.sum()), 4))
        pred_classes = np.where(rng.random(int(keep.sum())) < 0.1, 1 - classes[keep], classes[keep])
        extra = int(rng.integers(0, 3))
        fxy = rng.uniform(0, 150, (extra, 2))
        pred = np.vstack([pred, np.hstack([fxy, fxy + 20])])
        pred_classes = np.concatenate([pred_classes, rng.integers(0, 3, extra)])
        scores = np.concatenate([rng.uniform(0.2, 1, int(keep.sum())), rng.uniform(0.01, 0.6, extra)])  # false ones score lower
        out.append(ImageResult.of(true, classes, pred, pred_classes, scores))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_our_average_precision_equals_pycocotools_on_the_same_predictions(seed):
    images = noisy_predictions(seed)
    ours = detection_scores(images, NAMES)
    coco = coco_evaluate(images, [(256, 256)] * len(images), NAMES)
    assert ours.absent == ["bird"] and "bird" not in coco["per_class"]
    assert 0.3 < ours.mean("ap50_95") < 0.95  # a fixture where the figure means something
    assert ours.mean("ap50_95") == pytest.approx(coco["map50_95"], abs=1e-9)
    assert ours.mean("ap50") == pytest.approx(coco["map50"], abs=1e-9)
    for name in ours.present:
        assert ours.per_class[name].ap50_95 == pytest.approx(coco["per_class"][name]["ap50_95"], abs=1e-9)


def with_crowds(images: list[ImageResult], seed: int) -> list[ImageResult]:
    """The same images, half of them with a crowd region of cats (COCO's iscrowd) and detections on it: cats inside
    it, a dog, and one cat only half on it."""
    rng = np.random.default_rng(seed)
    out = []
    for k, im in enumerate(images):
        if k % 2:
            out.append(im)
            continue
        region = np.array([160.0, 160.0, 250.0, 250.0])
        xy = rng.uniform(165, 225, (4, 2))
        on = np.vstack([np.hstack([xy, xy + 15]), [[230, 230, 270, 250]]])  # the last: a fifth of it outside the region
        out.append(ImageResult.of(im.true_boxes, im.true_classes, np.vstack([im.pred_boxes, on]),
                                  np.concatenate([im.pred_classes, [0, 0, 0, 1, 0]]),
                                  np.concatenate([im.pred_scores, rng.uniform(0.3, 0.99, 5)]), [region], [0]))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_detections_on_a_crowd_region_are_ignored_as_pycocotools_ignores_them(seed):
    plain = noisy_predictions(seed)
    images = with_crowds(plain, seed)
    ours, coco = detection_scores(images, NAMES), coco_evaluate(images, [(256, 256)] * len(images), NAMES)
    for name in ours.present:
        assert ours.per_class[name].ap50_95 == pytest.approx(coco["per_class"][name]["ap50_95"], abs=1e-9), name
    assert ours.mean("ap50_95") == pytest.approx(coco["map50_95"], abs=1e-9)
    # the same detections with the regions forgotten are false: the cat's AP falls (the dog's counts them anyway)
    forgotten = [ImageResult.of(i.true_boxes, i.true_classes, i.pred_boxes, i.pred_classes, i.pred_scores) for i in images]
    assert detection_scores(forgotten, NAMES).per_class["cat"].ap50_95 < ours.per_class["cat"].ap50_95
    assert ours.per_class["dog"].ap50_95 == pytest.approx(detection_scores(forgotten, NAMES).per_class["dog"].ap50_95)


def test_a_crowd_region_hides_detections_of_its_class_from_the_counts_and_the_confusion_matrix():
    cat, crowd = [10, 10, 50, 50], [100, 100, 200, 200]
    on_crowd = [[110, 110, 130, 130], [150, 150, 190, 190]]
    image = ImageResult.of([cat], [0], [cat, *on_crowd, [120, 120, 140, 140]], [0, 0, 0, 1], [0.9, 0.8, 0.7, 0.6], [crowd], [0])
    counts = precision_recall([image], 3, conf=0.25, iou=0.5)
    assert counts.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]  # the cats on the crowd: neither; the dog there: false
    assert errors_per_image([image], 3, 0.25, 0.5) == [1]


def test_precision_and_recall_count_matches_within_each_class_at_the_confidence():
    a, b = [10, 10, 50, 50], [60, 60, 100, 100]
    images = [
        ImageResult.of([a, b], [0, 1], [a, b], [0, 0], [0.9, 0.8]),  # one right, one dog called a cat
        ImageResult.of([a], [0], [a], [0], [0.1]),  # below the confidence: a miss
    ]
    counts = precision_recall(images, 3, conf=0.25, iou=0.5)
    assert counts.tolist() == [[1, 1, 1], [0, 0, 1], [0, 0, 0]]  # cat: tp, fp, fn
    assert errors_per_image(images, 3, 0.25, 0.5) == [1, 1]  # the wrong class; the miss


def test_the_report_names_every_class_reports_absent_ones_and_writes_its_files(tmp_path):
    images = noisy_predictions(0, images=6)
    files = [write_image(tmp_path / "img" / f"{k}.jpg", (256, 256)) for k in range(6)]
    metrics = write_report(tmp_path / "out", images, [(256, 256)] * 6, files, NAMES, Settings(), "fixture", "val")
    assert metrics["absent_classes"] == ["bird"]
    assert set(metrics["ap50_95"]) == {"cat", "dog"}  # the gate's per-class scores: present classes only
    assert all(not isinstance(v, dict) or k in ("coco", "ap50_95") for k, v in metrics.items())  # flat for dvc metrics show
    rows = {row["class"]: row for row in csv.DictReader((tmp_path / "out" / "per_class.csv").open())}
    assert rows["bird"]["present"] == "False" and rows["bird"]["ap50_95"] == "" and rows["bird"]["objects"] == "0"
    assert float(rows["cat"]["ap50_95"]) == pytest.approx(metrics["ap50_95"]["cat"])
    assert metrics["map50_95"] == pytest.approx(metrics["coco"]["map50_95"], abs=1e-6)
    assert metrics["coco"]["difference_map50_95"] == pytest.approx(0, abs=1e-6)
    json.dumps(metrics, allow_nan=False)  # metrics.json is strict JSON (no NaN for an absent class)
    out = tmp_path / "out"
    header = (out / "confusion.csv").read_text().splitlines()[0]
    assert header == "true \\ predicted,cat,dog,bird,background"
    rows = [line.split(",")[0] for line in (out / "confusion.csv").read_text().splitlines()[1:]]
    assert rows == [*NAMES, "background"]
    assert sorted(p.name for p in (out / "pr").iterdir()) == ["cat.csv", "dog.csv"]
    assert (out / "pr" / "cat.csv").read_text().startswith("recall,precision,confidence\n")
    for png in ("confusion.png", "pr_curves.png", "errors.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("section", "key"), [({"conf": 2}, "conf"), ({"max_det": 0}, "max_det"), ({"iuo": 0.5}, "iuo"),
                                              ({"iou": "high"}, "iou")])
def test_evaluate_settings_name_the_bad_key(section, key):
    with pytest.raises(ParamsError, match=key):
        Settings.from_params(section)


def test_a_split_of_background_images_leaves_map_undefined_with_its_reason(tmp_path):
    images = [ImageResult.of([], [], [[10, 10, 50, 50]], [0], [0.9]), ImageResult.of([], [])]  # no object of any class
    files = [write_image(tmp_path / "img" / f"{k}.jpg", (64, 64)) for k in range(2)]
    metrics = write_report(tmp_path / "out", images, [(64, 64)] * 2, files, NAMES, Settings(), "fixture", "test")
    assert metrics["map50_95"] is None and metrics["ap50_95"] == {}
    assert metrics["undefined"] == ("the test split holds no object of any class (2 background images): "
                                    "mAP is a mean over the classes present")
    json.dumps(metrics, allow_nan=False)
