"""The promotion gate on evidence: paired bootstrap intervals over images, with each task's own rescorer."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from cvpipe.classification.evaluate import macro_f1
from cvpipe.detection.metrics import ImageResult, detection_scores, match, scores_of
from cvpipe.mlops.evidence import BootstrapSettings, interval, paired_difference, resamples
from cvpipe.mlops.registry import promotion_decision

NAMES = ["a", "b", "c", "d", "e"]
SETTINGS = BootstrapSettings(confidence=0.95, resamples=1000, seed=0)


def predictions(truth: np.ndarray, correct: float, rng: np.random.Generator) -> np.ndarray:
    """Each image right with probability ``correct``, else a random other class."""
    wrong = (truth + rng.integers(1, len(NAMES), len(truth))) % len(NAMES)
    return np.where(rng.random(len(truth)) < correct, truth, wrong)


def gate(truth: np.ndarray, new: np.ndarray, old: np.ndarray, tolerance: float = 0.05):
    """The decision the register stage takes for two classifiers' predictions on the same images."""
    images = [f"img{i}.png" for i in range(len(truth))]

    def scored(pred):
        per_class = dict(zip(NAMES, f1_score(truth, pred, labels=range(len(NAMES)), average=None, zero_division=0), strict=True))
        return macro_f1(truth, pred, len(NAMES)), per_class, lambda s: macro_f1(truth[s], pred[s], len(NAMES))

    (n, n_groups, n_rescore), (o, o_groups, o_rescore) = scored(new), scored(old)
    difference = paired_difference((n, n_rescore), (o, o_rescore), images, images, SETTINGS)
    return n, o, promotion_decision(n, n_groups, o, o_groups, 0.0, tolerance, "macro_f1", "class", difference)


def test_macro_f1_from_counts_is_scikit_learns():
    rng = np.random.default_rng(1)
    for _ in range(50):
        truth = rng.integers(0, 5, rng.integers(1, 40))
        pred = np.where(rng.random(len(truth)) < 0.3, rng.integers(0, 5, len(truth)), truth)
        assert macro_f1(truth, pred, 5) == pytest.approx(f1_score(truth, pred, labels=range(5), average="macro", zero_division=0),
                                                         abs=1e-12)


def test_a_challenger_equal_to_the_champion_up_to_noise_is_not_promoted():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, len(NAMES), 200)
    for seed in range(20):  # two models of the same skill, their mistakes on different images: the first seed ahead
        old, new = predictions(truth, 0.85, np.random.default_rng(100 + seed)), predictions(truth, 0.85, np.random.default_rng(200 + seed))
        if macro_f1(truth, new, 5) > macro_f1(truth, old, 5) + 0.005:
            break
    n, o, decision = gate(truth, new, old)
    assert n > o + 0.005  # the point estimates alone (the old gate) would have promoted it
    assert not decision.promote and "does not beat the champion's" in decision.reason and "not above min_delta 0.0" in decision.reason
    assert decision.difference.low < 0 < decision.difference.high
    assert decision.difference.estimate == pytest.approx(n - o)


def test_a_clearly_better_challenger_is_promoted():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, len(NAMES), 200)
    n, o, decision = gate(truth, predictions(truth, 0.95, rng), predictions(truth, 0.75, rng))
    assert decision.promote and 0 < decision.difference.low < n - o < decision.difference.high
    assert "95% CI" in decision.reason and "1000 resamples of 200 images" in decision.reason


def test_a_challenger_better_on_average_that_loses_a_class_is_not_promoted():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, len(NAMES), 300)
    old = predictions(truth, 0.8, rng)
    new = predictions(truth, 1.0, rng)
    e = truth == 4
    new[e] = np.where(rng.random(e.sum()) < 0.55, 4, 0)  # class e: right on 55% of its images (the champion: ~80%)
    _, _, decision = gate(truth, new, old)
    assert decision.difference.low > 0  # better on average, on evidence
    assert not decision.promote and "of class 'e' drops by" in decision.reason
    assert decision.changes["e"] < -0.05 and all(decision.changes[c] > 0 for c in "abcd")
    assert gate(truth, new, old, tolerance=0.5)[2].promote  # with a tolerance that allows it


def test_a_tie_never_promotes_and_the_interval_is_the_same_on_every_run():
    truth = np.random.default_rng(0).integers(0, 5, 60)
    pred = predictions(truth, 0.8, np.random.default_rng(3))
    n, _, decision = gate(truth, pred, pred.copy())
    assert (decision.difference.low, decision.difference.high) == (0.0, 0.0) and not decision.promote
    assert np.array_equal(resamples(60, SETTINGS), resamples(60, SETTINGS))
    rescore = lambda s: macro_f1(truth[s], pred[s], 5)  # noqa: E731
    a, b = interval(n, rescore, 60, SETTINGS), interval(n, rescore, 60, SETTINGS)
    assert a == b and a.low <= n <= a.high and a.high - a.low > 0.05  # 60 images: an interval of several points


def test_the_paired_comparison_refuses_different_images():
    with pytest.raises(ValueError, match="different images"):
        paired_difference((0.5, lambda s: 0.5), (0.4, lambda s: 0.4), ["a.png", "b.png"], ["a.png", "c.png"], SETTINGS)


def test_detection_rescoring_a_resample_equals_scoring_the_resampled_images():
    rng = np.random.default_rng(0)
    images = []
    for _ in range(12):
        k = int(rng.integers(0, 4))
        truth = np.sort(rng.uniform(0, 200, (k, 4)).reshape(k, 2, 2), axis=1).reshape(k, 4)
        classes = rng.integers(0, 3, k)
        noisy = truth + rng.normal(0, 4, truth.shape)
        extra = np.sort(rng.uniform(0, 200, (2, 4)).reshape(2, 2, 2), axis=1).reshape(2, 4)
        images.append(ImageResult.of(truth, classes, np.vstack([noisy, extra]), np.concatenate([classes, rng.integers(0, 3, 2)]),
                                     rng.uniform(0.01, 1, k + 2)))
    names = ["x", "y", "z"]
    matched = match(images, 3)
    assert scores_of(matched, names) == detection_scores(images, names)
    for sample in resamples(12, BootstrapSettings(resamples=20, seed=1)):
        ours = scores_of(matched, names, sample)
        theirs = detection_scores([images[i] for i in sample], names)
        assert ours.present == theirs.present
        assert ours.mean("ap50_95") == pytest.approx(theirs.mean("ap50_95"), abs=1e-12)
