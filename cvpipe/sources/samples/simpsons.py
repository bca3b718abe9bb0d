"""Simpsons sample: a cartoon head per character on cluttered backgrounds of varied size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cvpipe.sources.samples.draw import add_noise, jitter, noisy_background, save_jpeg, star

YELLOW = (255, 217, 15)
# character -> (shirt colour, hair colour); hair shape is drawn per character below.
CHARACTERS = {
    "bart_simpson": ((235, 95, 20), YELLOW),
    "homer_simpson": ((245, 245, 245), (110, 95, 80)),
    "lisa_simpson": ((200, 20, 30), YELLOW),
    "marge_simpson": ((60, 170, 70), (40, 70, 200)),
}
TRAIN_PER_CHARACTER = 20
TEST_PER_CHARACTER = 15  # 60 test images: a held-out figure to decide on (bench/heldout.py)


def draw_character(draw: ImageDraw.ImageDraw, rng: np.random.Generator, name: str, x0: int, y0: int, s: int) -> tuple[int, int, int, int]:
    """Draw a head of size ``s`` at (x0, y0) and return its box, hair included."""
    shirt, hair = CHARACTERS[name]
    cx, cy, r = x0 + s / 2, y0 + s * 0.55, s * 0.3
    top = cy - r
    draw.rectangle([cx - r * 1.2, cy + r * 0.8, cx + r * 1.2, min(cy + r * 2.2, y0 + s * 1.3)], fill=jitter(rng, shirt))
    if name == "marge_simpson":
        top = cy - r * 3.2
        draw.ellipse([cx - r * 0.8, top, cx + r * 0.8, cy - r * 0.3], fill=jitter(rng, hair))
    elif name == "lisa_simpson":
        draw.polygon(star(cx, cy - r * 0.3, r * 1.7, points=8), fill=jitter(rng, hair))
        top = cy - r * 2.0
    elif name == "bart_simpson":
        spikes = [(cx - r + k * r / 4, cy - r * (1.7 if k % 2 else 0.6)) for k in range(9)]
        draw.polygon([(cx - r, cy), *spikes, (cx + r, cy)], fill=jitter(rng, hair))
        top = cy - r * 1.7
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=jitter(rng, YELLOW, 10))
    if name == "homer_simpson":
        draw.chord([cx - r, cy - r * 0.1, cx + r, cy + r], 0, 180, fill=jitter(rng, hair))
        draw.arc([cx - r * 0.5, cy - r * 1.4, cx, cy - r * 0.6], 200, 340, fill=(60, 50, 40), width=2)
    for ex in (-0.35, 0.35):
        draw.ellipse(
            [cx + ex * r - r * 0.25, cy - r * 0.45, cx + ex * r + r * 0.25, cy + r * 0.05], fill=(255, 255, 255), outline=(0, 0, 0)
        )
    return int(cx - r * 1.7), int(max(top, 0)), int(cx + r * 1.7), int(cy + r * 1.05)


def _muted(rng: np.random.Generator) -> tuple[int, int, int]:
    grey = int(rng.integers(70, 190))
    return tuple(int(np.clip(grey + rng.integers(-25, 26), 0, 255)) for _ in range(3))


def _picture(rng: np.random.Generator, name: str) -> tuple[Image.Image, tuple[int, int, int, int]]:
    w, h = int(rng.integers(96, 193)), int(rng.integers(96, 193))
    image = noisy_background(rng, (w, h), _muted(rng), sigma=10)
    draw = ImageDraw.Draw(image)
    for _ in range(3):  # clutter in muted colours: the background tells nothing, the character does
        bx, by = int(rng.integers(0, w)), int(rng.integers(0, h))
        draw.rectangle([bx, by, bx + int(rng.integers(10, 40)), by + int(rng.integers(10, 40))], fill=_muted(rng))
    s = int(rng.integers(int(min(w, h) * 0.7), int(min(w, h) * 0.9)))
    x0, y0 = int(rng.integers(0, w - s + 1)), int(rng.integers(int(s * 0.3), max(int(s * 0.3) + 1, h - s + 1)))
    box = draw_character(draw, rng, name, x0, y0 - int(s * 0.3), s)
    return add_noise(rng, image, 4), box


def generate(root: Path, rng: np.random.Generator) -> None:
    """``simpsons_dataset/<c>/pic_0000.jpg``, ``kaggle_simpson_testset/<c>_<n>.jpg``, ``annotation.txt``."""
    rows = []
    for name in CHARACTERS:
        for k in range(TRAIN_PER_CHARACTER):
            image, (x1, y1, x2, y2) = _picture(rng, name)
            save_jpeg(image, root / "simpsons_dataset" / name / f"pic_{k:04d}.jpg")
            rows.append(f"./characters/{name}/pic_{k:04d}.jpg,{x1},{y1},{min(x2, image.width - 1)},{min(y2, image.height - 1)},{name}")
        for k in range(TEST_PER_CHARACTER):
            image, _ = _picture(rng, name)
            save_jpeg(image, root / "kaggle_simpson_testset" / f"{name}_{k}.jpg")
    (root / "annotation.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
