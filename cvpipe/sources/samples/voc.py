"""LabelImg sample: London Underground signs on tiled walls, Pascal VOC XML as LabelImg writes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cvpipe.data.labelimg import labelimg_xml
from cvpipe.sources.samples.draw import add_noise, jitter, place_boxes, save_jpeg

CLASSES = ("roundel", "way out", "platform sign")
IMAGES = 300  # enough gradient steps for a detector from scratch
ANNOTATOR_DIR = "/Users/annotator/Desktop/london_underground/images"


def _wall(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    image = Image.new("RGB", (w, h), jitter(rng, (228, 222, 200), 10))
    d = ImageDraw.Draw(image)
    step = int(rng.integers(14, 22))
    for x in range(0, w, step):
        d.line([(x, 0), (x, h)], fill=(180, 175, 160))
    for y in range(0, h, step // 2):
        d.line([(0, y), (w, y)], fill=(180, 175, 160))
    return image


def _sign(d: ImageDraw.ImageDraw, rng: np.random.Generator, name: str, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Draw one sign filling ``box`` (square); return the tight box of what was drawn."""
    x0, y0, x1, y1 = box
    s = x1 - x0
    if name == "roundel":
        ring = max(3, s // 6)
        d.ellipse(box, fill=jitter(rng, (220, 36, 31), 10))
        d.ellipse([x0 + ring, y0 + ring, x1 - ring, y1 - ring], fill=(250, 250, 250))
        bar = max(3, s // 6)
        d.rectangle([x0 - 3, y0 + s // 2 - bar, x1 + 3, y0 + s // 2 + bar], fill=jitter(rng, (0, 25, 168), 10))
        return x0 - 3, y0, x1 + 3, y1
    if name == "way out":
        top, bottom = y0 + s // 4, y1 - s // 4
        d.rectangle([x0, top, x1, bottom], fill=jitter(rng, (255, 206, 0), 10))
        d.rectangle([x0 + s // 8, top + (bottom - top) // 3, x1 - s // 8, bottom - (bottom - top) // 3], fill=(20, 20, 20))
        return x0, top, x1, bottom
    left, right = x0 + s // 6, x1 - s // 6  # platform sign: tall blue panel with white bars
    d.rectangle([left, y0, right, y1], fill=jitter(rng, (0, 60, 140), 10))
    for k in range(3):
        yy = y0 + (k + 1) * s // 4
        d.rectangle([left + 3, yy - 2, right - 3, yy + 2], fill=(250, 250, 250))
    return left, y0, right, y1


def generate(root: Path, rng: np.random.Generator) -> None:
    """``images/underground_NNN.jpg`` (one ``.JPG``, as cameras write) and ``annotations/*.xml``."""
    (root / "annotations").mkdir()
    for k in range(1, IMAGES + 1):
        w, h = int(rng.integers(160, 225)), int(rng.integers(120, 169))
        image = _wall(rng, w, h)
        d = ImageDraw.Draw(image)
        sizes = [int(rng.integers(30, 52)) for _ in range(int(rng.integers(1, 4)))]
        objects = []
        for box in place_boxes(rng, (w, h), sizes, margin=5):
            name = CLASSES[int(rng.integers(0, len(CLASSES)))]
            x0, y0, x1, y1 = _sign(d, rng, name, box)
            # LabelImg stores 1-based pixel corners clipped to the image and marks edge boxes truncated.
            corners = (max(x0, 1), max(y0, 1), min(x1, w), min(y1, h))
            objects.append((name, corners, corners != (x0, y0, x1, y1)))
        filename = f"underground_{k:03d}.{'JPG' if k == 7 else 'jpg'}"
        save_jpeg(add_noise(rng, image, 4), root / "images" / filename)
        xml = labelimg_xml(filename, w, h, objects, verified=k % 5 != 0, path=f"{ANNOTATOR_DIR}/{filename}")
        (root / "annotations" / f"underground_{k:03d}.xml").write_text(xml, encoding="utf-8")
