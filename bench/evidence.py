"""How many held-out images the promotion gate needs: the paired bootstrap interval's half-width against the split size.

    python bench/evidence.py [--accuracy 0.9] [--classes 5] [--resamples 1000]

Two classifiers of the same skill (each image right with probability ``accuracy``, their mistakes on
independent images) are compared as the gate compares them (:func:`cvpipe.mlops.evidence.paired_difference`
of macro-F1). The half-width of the 95% interval is the smallest true gain the gate can see at that size:
a challenger must beat the champion by about that much (plus ``registry.min_delta``) to be promoted. The
last column is the ratio to the first row's half-width, against the 1/sqrt(n) law.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from cvpipe.classification.evaluate import macro_f1
from cvpipe.mlops.evidence import BootstrapSettings, paired_difference


def half_width(n: int, accuracy: float, classes: int, settings: BootstrapSettings, trials: int = 5) -> float:
    widths = []
    for trial in range(trials):
        rng = np.random.default_rng(1000 * n + trial)
        truth = rng.integers(0, classes, n)

        def model(truth=truth, rng=rng) -> np.ndarray:
            wrong = (truth + rng.integers(1, classes, n)) % classes
            return np.where(rng.random(n) < accuracy, truth, wrong)

        def score(p: np.ndarray, truth=truth) -> tuple[float, object]:
            return macro_f1(truth, p, classes), lambda s: macro_f1(truth[s], p[s], classes)

        a, b = model(), model()
        d = paired_difference(score(a), score(b), list(range(n)), list(range(n)), settings)
        widths.append((d.high - d.low) / 2)
    return float(np.mean(widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accuracy", type=float, default=0.9)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    settings = BootstrapSettings(0.95, args.resamples, 0)
    sizes = [40, 60, 100, 200, 400, 1000, 2000]
    print(f"two classifiers of accuracy {args.accuracy}, {args.classes} classes, macro-F1, 95% paired interval")
    print(f"{'images':>7} {'half-width':>11} {'vs 40 images':>13} {'1/sqrt(n) law':>14}")
    first = None
    for n in sizes:
        w = half_width(n, args.accuracy, args.classes, settings)
        first = first or w
        print(f"{n:>7} {w:>11.4f} {w / first:>13.2f} {math.sqrt(sizes[0] / n):>14.2f}")


if __name__ == "__main__":
    main()
