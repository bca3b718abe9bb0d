"""DSB2018 sample: fluorescence (grey, stored as RGBA) and brightfield images of nuclei, one mask each.

Sized for learning and for a stable held-out figure: 160 stage1_train images of 96-160 px (params.yaml holds
60% of them out for evaluation, so about 64 are trained on and 96 scored) with 5-16 nuclei each, a quarter of them
touching a neighbour (the case watershed has to split), and 8 test images without masks. Nuclei are
rotated ellipses, brighter (fluorescence) or darker (brightfield) towards the centre, so two touching
nuclei show a faint valley between them, as real ones do.
"""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from cvpipe.data.rle import dsb_encode
from cvpipe.sources.samples.scale import SAMPLE, each, scaled

SIZES = [(96, 96), (128, 96), (128, 128), (160, 128)]
COUNTS = {"stage1_train": 160, "stage1_test": 8}  # params.yaml holds 60% of stage1_train out: ~96 held-out images
TOUCHING = 0.25  # share of nuclei placed against an earlier one
MIN_AREA = 30
# The real-size set: stage 1's 670 training images (about 29,000 masks) and 65 test images, in its
# commonest sizes (w, h) with about their shares
REAL_COUNTS = {"stage1_train": 670, "stage1_test": 65}
REAL_SIZES = [(256, 256), (320, 256), (360, 360), (696, 520)]
REAL_SHARES = [0.5, 0.17, 0.14, 0.19]
REAL_NUCLEI = (24, 70)  # attempted per image; some are hidden by earlier ones and skipped


def _hex_id(rng: np.random.Generator) -> str:
    return hashlib.sha256(rng.bytes(16)).hexdigest()


def _ellipse(w: int, h: int, cx: float, cy: float, rx: float, ry: float, angle: float) -> np.ndarray:
    """Normalised squared radius of a rotated ellipse at every pixel (<= 1 inside)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    c, s = np.cos(angle), np.sin(angle)
    u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    return (u / rx) ** 2 + (v / ry) ** 2


def _nuclei(rng: np.random.Generator, w: int, h: int, count: tuple[int, int] = (5, 17)) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Non-overlapping nuclei (as DSB's masks never overlap), some touching: boolean masks and radial profiles."""
    taken = np.zeros((h, w), dtype=bool)
    masks: list[np.ndarray] = []
    profiles: list[np.ndarray] = []
    centres: list[tuple[float, float, float]] = []
    for _ in range(int(rng.integers(*count))):
        rx, ry = rng.uniform(5, 11), rng.uniform(5, 11)
        r = max(rx, ry)
        if centres and rng.random() < TOUCHING:  # against an earlier nucleus, slightly overlapping it
            px, py, pr = centres[int(rng.integers(0, len(centres)))]
            a = rng.uniform(0, 2 * np.pi)
            cx, cy = px + np.cos(a) * (pr + r) * 0.8, py + np.sin(a) * (pr + r) * 0.8
        else:
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
        d2 = _ellipse(w, h, cx, cy, rx, ry, rng.uniform(0, np.pi))
        mask = (d2 <= 1) & ~taken
        if mask.sum() < MIN_AREA or mask.sum() < 0.6 * (d2 <= 1).sum():  # mostly hidden or cut off: skip
            continue
        taken |= mask
        masks.append(mask)
        profiles.append(np.clip(1 - 0.45 * d2, 0, 1))
        centres.append((cx, cy, r))
    return masks, profiles


def _render(rng: np.random.Generator, masks: list[np.ndarray], profiles: list[np.ndarray], w: int, h: int,
            brightfield: bool) -> Image.Image:
    if brightfield:  # purple nuclei on a pale pink background, as in the H&E-stained images
        background, nucleus = np.array([225, 200, 215]), np.array([110, 60, 140])
    else:  # bright nuclei on black
        background, nucleus = np.array([8, 8, 8]), np.array([1, 1, 1]) * rng.uniform(130, 230)
    pixels = np.broadcast_to(background, (h, w, 3)).astype(np.float32).copy()
    for m, p in zip(masks, profiles, strict=True):
        strength = (0.75 + 0.25 * p[m])[:, None] * rng.uniform(0.85, 1.1)
        pixels[m] = background + (nucleus - background) * strength
    pixels += rng.normal(0, 1, (h, w))[..., None] * 6
    rgb = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").filter(ImageFilter.GaussianBlur(0.8))
    if not brightfield:  # grey, as DSB's fluorescence images are
        grey = np.asarray(rgb)[..., 0]
        rgb = Image.fromarray(np.stack([grey] * 3, axis=-1), "RGB")
    return rgb.convert("RGBA")  # DSB stores every image as RGBA


def generate(root: Path, rng: np.random.Generator, scale: str | float = SAMPLE, workers: int = 2) -> None:
    """``stage1_{train,test}/<id>/images/<id>.png``, ``masks/<mask id>.png``, ``stage1_train_labels.csv``.
    ``scale``: the sample, or a factor of the real-size set (670 + 65 images, about 29,000 masks)."""
    rows = ["ImageId,EncodedPixels"]
    if scale != SAMPLE:
        seed = int(rng.integers(2**63))
        for s, (stage, total) in enumerate(REAL_COUNTS.items()):
            for image_rows in each(partial(_real_image, root / stage, (seed, s)), scaled(total, scale), workers, f"dsb2018 {stage}"):
                rows.extend(image_rows)
        (root / "stage1_train_labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        return
    for stage, count in COUNTS.items():
        for k in range(count):
            sample_id = _hex_id(rng)
            w, h = SIZES[int(rng.integers(0, len(SIZES)))]
            masks, profiles = _nuclei(rng, w, h)
            image = _render(rng, masks, profiles, w, h, brightfield=(k % 3 == 2))
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


def _real_image(folder: Path, stream: tuple[int, int], k: int) -> list[str]:
    """Image ``k`` of a real-size stage, written with its masks (training only); its rows of the labels CSV."""
    rng = np.random.default_rng([*stream, k])
    sample_id = _hex_id(rng)
    w, h = REAL_SIZES[int(rng.choice(len(REAL_SIZES), p=REAL_SHARES))]
    masks, profiles = _nuclei(rng, w, h, REAL_NUCLEI)
    image = _render(rng, masks, profiles, w, h, brightfield=(k % 3 == 2))
    (folder / sample_id / "images").mkdir(parents=True)
    image.save(folder / sample_id / "images" / f"{sample_id}.png")
    if folder.name.endswith("test"):
        return []
    (folder / sample_id / "masks").mkdir()
    rows = []
    for mask in masks:
        Image.fromarray(mask.astype(np.uint8) * 255, "L").save(folder / sample_id / "masks" / f"{_hex_id(rng)}.png")
        rows.append(f"{sample_id},{dsb_encode(mask)}")
    return rows
