"""DSB2018 sample: fluorescence (grey as RGBA) and brightfield images of nuclei, one mask each."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from cvpipe.rle import dsb_encode

SIZES = [(96, 96), (128, 96), (128, 128)]
COUNTS = {"stage1_train": 10, "stage1_test": 4}


def _hex_id(rng: np.random.Generator) -> str:
    return hashlib.sha256(rng.bytes(16)).hexdigest()


def _nuclei(rng: np.random.Generator, w: int, h: int) -> list[np.ndarray]:
    """Non-overlapping elliptical nuclei, one boolean mask each (as DSB's masks never overlap)."""
    taken = np.zeros((h, w), dtype=bool)
    masks = []
    for _ in range(int(rng.integers(4, 11))):
        rx, ry = rng.uniform(4, 10), rng.uniform(4, 10)
        cx, cy = rng.uniform(rx, w - rx), rng.uniform(ry, h - ry)
        canvas = Image.new("L", (w, h), 0)
        ImageDraw.Draw(canvas).ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=1)
        mask = (np.asarray(canvas) > 0) & ~taken
        if mask.sum() >= 20:
            taken |= mask
            masks.append(mask)
    return masks


def _render(rng: np.random.Generator, masks: list[np.ndarray], w: int, h: int, brightfield: bool) -> Image.Image:
    texture = rng.normal(0, 1, (h, w))
    if brightfield:  # purple nuclei on a pale pink background, as in the H&E-stained images
        background, nucleus = np.array([225, 200, 215]), np.array([110, 60, 140])
    else:  # bright nuclei on black, stored as RGBA like DSB's grey images
        background, nucleus = np.array([8, 8, 8]), np.array([1, 1, 1]) * rng.uniform(120, 230)
    pixels = np.broadcast_to(background, (h, w, 3)).astype(np.float32).copy()
    for m in masks:
        pixels[m] = nucleus * rng.uniform(0.85, 1.1)
    pixels += texture[..., None] * 6
    rgb = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").filter(ImageFilter.GaussianBlur(0.8))
    if not brightfield:
        grey = np.asarray(rgb)[..., 0]
        rgb = Image.fromarray(np.stack([grey] * 3, axis=-1), "RGB")
    rgba = rgb.convert("RGBA")
    return rgba


def generate(root: Path, rng: np.random.Generator) -> None:
    """``stage1_{train,test}/<id>/images/<id>.png``, ``masks/<mask id>.png``, ``stage1_train_labels.csv``."""
    rows = ["ImageId,EncodedPixels"]
    for stage, count in COUNTS.items():
        for k in range(count):
            sample_id = _hex_id(rng)
            w, h = SIZES[int(rng.integers(0, len(SIZES)))]
            masks = _nuclei(rng, w, h)
            image = _render(rng, masks, w, h, brightfield=(k % 3 == 2))
            folder = root / stage / sample_id
            (folder / "images").mkdir(parents=True)
            image.save(folder / "images" / f"{sample_id}.png")
            if stage.endswith("test"):
                continue
            (folder / "masks").mkdir()
            for mask in masks:
                Image.fromarray(mask.astype(np.uint8) * 255, "L").save(folder / "masks" / f"{_hex_id(rng)}.png")
                rows.append(f"{sample_id},{dsb_encode(mask)}")
    (root / "stage1_train_labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
