"""Fruits-360 sample: one fruit on white, 100x100 RGB, class folders whose names have spaces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cvpipe.sources.samples.draw import add_noise, jitter, save_jpeg

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


def draw_fruit(rng: np.random.Generator, name: str) -> Image.Image:
    """One fruit, centred with jitter, random scale and rotation, on a white background."""
    colour, aspect, accent = FRUITS[name]
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


def generate(root: Path, rng: np.random.Generator) -> None:
    """``Training/<class>/r_<n>_100.jpg`` and ``Test/<class>/<n>_100.jpg``, as the real set names them."""
    for split, count in COUNTS.items():
        for name in FRUITS:
            for k in range(count):
                stem = f"r_{k * 3 + 1}_100" if k % 2 else f"{k * 3}_100"
                save_jpeg(draw_fruit(rng, name), root / split / name / f"{stem}.jpg")
