"""Fruits-360 sample: one fruit on white, 100x100 RGB, class folders whose names have spaces."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cvpipe.sources.samples.draw import add_noise, jitter, save_jpeg
from cvpipe.sources.samples.scale import SAMPLE, each, scaled, spread

SIZE = 100
# name -> (colour, ellipse aspect (w/h), accent colour)
FRUITS = {
    "Apple Braeburn": ((175, 30, 35), 1.0, (90, 60, 20)),
    "Banana": ((235, 205, 40), 2.4, (90, 70, 20)),
    "Blueberry": ((40, 45, 110), 1.0, (20, 20, 50)),
    "Kiwi": ((120, 90, 50), 1.35, (110, 170, 50)),
    "Orange": ((245, 140, 20), 1.0, (245, 170, 60)),
}
COUNTS = {"Training": 24, "Test": 8}
# the real set (the 131-class release): images per split over all classes
REAL_CLASSES = 131
REAL_COUNTS = {"Training": 67_500, "Test": 22_500}


def draw_fruit(rng: np.random.Generator, name: str, look: tuple | None = None) -> Image.Image:
    """One fruit, centred with jitter, random scale and rotation, on a white background. ``name`` is one of
    FRUITS (its shape); ``look`` (colour, aspect, accent) another variety's, else the fruit's own."""
    colour, aspect, accent = look or FRUITS[name]
    scale = rng.uniform(0.55, 0.8) * (0.55 if name == "Blueberry" else 1.0)
    ry = SIZE * scale / 2 / max(1.0, aspect / 1.6)
    rx = ry * aspect
    big = Image.new("RGB", (SIZE * 2, SIZE * 2), (255, 255, 255))
    d = ImageDraw.Draw(big)
    c = SIZE
    d.ellipse([c - rx, c - ry, c + rx, c + ry], fill=jitter(rng, colour))
    if name == "Kiwi":
        d.ellipse([c - rx * 0.55, c - ry * 0.55, c + rx * 0.55, c + ry * 0.55], fill=jitter(rng, accent))
    elif name == "Banana":
        d.ellipse([c - rx, c - ry * 1.6, c + rx, c + ry * 0.2], fill=(255, 255, 255))
    else:
        d.ellipse([c - 3, c - ry - 2, c + 3, c - ry + 6], fill=accent)  # stem or calyx
    big = big.rotate(float(rng.uniform(0, 360)), resample=Image.BILINEAR, fillcolor=(255, 255, 255))
    dx, dy = rng.integers(-8, 9, size=2)
    image = big.crop((c // 2 - dx, c // 2 - dy, c // 2 - dx + SIZE, c // 2 - dy + SIZE))
    return add_noise(rng, image, 3)


def _stem(k: int) -> str:
    return f"r_{k * 3 + 1}_100" if k % 2 else f"{k * 3}_100"


def generate(root: Path, rng: np.random.Generator, scale: str | float = SAMPLE, workers: int = 2) -> None:
    """``Training/<class>/r_<n>_100.jpg`` and ``Test/<class>/<n>_100.jpg``, as the real set names them.
    ``scale``: the 5-class sample, or a factor of the real set (131 classes, 90,000 images)."""
    if scale == SAMPLE:
        for split, count in COUNTS.items():
            for name in FRUITS:
                for k in range(count):
                    save_jpeg(draw_fruit(rng, name), root / split / name / f"{_stem(k)}.jpg")
        return
    seed = int(rng.integers(2**63))
    plan = tuple((split, tuple(spread(scaled(total, scale), REAL_CLASSES))) for split, total in REAL_COUNTS.items())
    n = sum(sum(counts) for _, counts in plan)
    for _ in each(partial(_write_real, root, seed, plan), n, workers, "fruits360"):
        pass


def variety(seed: int, c: int) -> tuple[str, str, tuple]:
    """Class ``c`` of the real-size set: its folder name, the fruit whose shape it has, and its look."""
    kinds = list(FRUITS)
    kind = kinds[c % len(kinds)]
    if c < len(kinds):
        return kind, kind, FRUITS[kind]
    rng = np.random.default_rng([seed, 1 << 20, c])
    aspect = FRUITS[kind][1]
    look = (tuple(int(v) for v in rng.integers(20, 236, 3)), aspect * float(rng.uniform(0.85, 1.15)),
            tuple(int(v) for v in rng.integers(20, 236, 3)))
    return f"{kind} {c // len(kinds) + 1}", kind, look


def _write_real(root: Path, seed: int, plan: tuple[tuple[str, tuple[int, ...]], ...], i: int) -> None:
    """Image ``i`` of the split-major, class-minor order of ``plan`` ((split, images per class), ...)."""
    k = i
    for split, counts in plan:
        for c, count in enumerate(counts):
            if k < count:
                return _write_one(root, seed, i, split, c, k)
            k -= count
    raise IndexError(i)


def _write_one(root: Path, seed: int, i: int, split: str, c: int, k: int) -> None:
    name, kind, look = variety(seed, c)
    save_jpeg(draw_fruit(np.random.default_rng([seed, i]), kind, look), root / split / name / f"{_stem(k)}.jpg")
