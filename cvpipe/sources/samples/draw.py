"""Drawing helpers shared by the sample generators."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

Color = tuple[int, int, int]


def jitter(rng: np.random.Generator, color: Color, amount: int = 18) -> Color:
    """``color`` with each channel moved by up to ``amount``."""
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in color)


def noisy_background(rng: np.random.Generator, size: tuple[int, int], base: Color, sigma: float = 8) -> Image.Image:
    """A flat ``base`` colour with Gaussian pixel noise, as an RGB image of ``size`` (w, h)."""
    w, h = size
    pixels = np.asarray(base, dtype=np.float32) + rng.normal(0, sigma, (h, w, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def add_noise(rng: np.random.Generator, image: Image.Image, sigma: float = 6) -> Image.Image:
    """``image`` with Gaussian pixel noise added."""
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels + rng.normal(0, sigma, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), image.mode)


def polygon(cx: float, cy: float, r: float, sides: int, rotation: float = 0.0) -> list[tuple[float, float]]:
    """Vertices of a regular polygon centred on (cx, cy)."""
    return [
        (cx + r * math.cos(rotation + 2 * math.pi * k / sides), cy + r * math.sin(rotation + 2 * math.pi * k / sides))
        for k in range(sides)
    ]


def star(cx: float, cy: float, r: float, points: int = 5, rotation: float = -math.pi / 2) -> list[tuple[float, float]]:
    """Vertices of a star with ``points`` tips."""
    out = []
    for k in range(2 * points):
        radius = r if k % 2 == 0 else r * 0.45
        a = rotation + math.pi * k / points
        out.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
    return out


def place_boxes(
    rng: np.random.Generator, canvas: tuple[int, int], sizes: list[int], margin: int = 2, tries: int = 200
) -> list[tuple[int, int, int, int]]:
    """Non-overlapping square boxes (x0, y0, x1, y1) of the given sizes inside ``canvas`` (w, h)."""
    w, h = canvas
    boxes: list[tuple[int, int, int, int]] = []
    for s in sizes:
        for _ in range(tries):
            x0 = int(rng.integers(margin, max(margin + 1, w - s - margin)))
            y0 = int(rng.integers(margin, max(margin + 1, h - s - margin)))
            box = (x0, y0, x0 + s, y0 + s)
            if all(box[2] + margin <= b[0] or b[2] + margin <= box[0] or box[3] + margin <= b[1] or b[3] + margin <= box[1] for b in boxes):
                boxes.append(box)
                break
    return boxes


def save_jpeg(image: Image.Image, path: Path, quality: int = 90) -> None:
    """Save as baseline JPEG with fixed settings, so the bytes are reproducible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.convert("RGB").save(path, format="JPEG", quality=quality, optimize=False)


def mask_of(size: tuple[int, int], shape) -> np.ndarray:
    """Binary mask (h, w) of a shape drawn by ``shape(draw)`` on a blank canvas of ``size`` (w, h)."""
    canvas = Image.new("L", size, 0)
    shape(ImageDraw.Draw(canvas))
    return np.asarray(canvas) > 0
