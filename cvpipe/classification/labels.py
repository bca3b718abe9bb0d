"""Training labels most likely wrong: confident learning on out-of-fold class probabilities.

Every image of the dataset, whatever its split, is predicted by a model that never saw it: the images are cut into
folds and each fold is predicted by a model trained on the others (its best epoch chosen by their training loss, so
that no held-out label steers it). A class's threshold is the mean probability the models give that class
on the images labelled with it; an image is suspect when a class other than its label reaches that class's threshold
and is the likeliest such class (Northcutt et al., "Confident Learning", 2021: the off-diagonal of the confident
joint). Suspects are ranked by the margin between that class's probability and the label's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Flagged:
    """One suspect label: the image's index in the table, its given class, the class the folds saw instead, the
    two probabilities and the margin between them (the rank)."""

    index: int
    given: int
    likely: int
    p_given: float
    p_likely: float

    @property
    def margin(self) -> float:
        return self.p_likely - self.p_given


def thresholds(given: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per class, the mean out-of-fold probability of that class on the images labelled with it (1 where none is)."""
    out = np.ones(probs.shape[1])
    for j in range(probs.shape[1]):
        mine = given == j
        if mine.any():
            out[j] = float(probs[mine, j].mean())
    return out


def confident_errors(indices: np.ndarray, given: np.ndarray, probs: np.ndarray) -> list[Flagged]:
    """The images whose likeliest class above its threshold is not their label, largest margin first (ties: in
    ``indices`` order)."""
    t = thresholds(given, probs)
    flagged = []
    for k, (g, p) in enumerate(zip(given.tolist(), probs, strict=True)):
        above = np.flatnonzero(p >= t)
        if not len(above):
            continue
        likely = int(above[np.argmax(p[above])])
        if likely != g:
            flagged.append(Flagged(int(indices[k]), g, likely, float(p[g]), float(p[likely])))
    return sorted(flagged, key=lambda f: -f.margin)


def out_of_fold(images: np.ndarray, labels: np.ndarray, folds: list[np.ndarray], num_classes: int, config,
                device) -> np.ndarray:
    """Class probabilities of every image in ``folds``, each from the model trained on the other folds and watching
    their loss (rows in the order of the folds' indices, concatenated and sorted)."""
    from cvpipe.classification.fit import fit, predict

    every = np.sort(np.concatenate(folds))
    probs = np.zeros((len(every), num_classes), dtype=np.float64)
    position = {int(i): k for k, i in enumerate(every)}
    for n, held in enumerate(folds):
        rest = np.sort(np.concatenate([f for m, f in enumerate(folds) if m != n]))
        model = fit(images, labels, rest, rest, num_classes, config, device).model
        probs[[position[int(i)] for i in held]] = predict(model, images, held, device)
    return probs
