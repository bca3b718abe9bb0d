"""COCO sample: coloured shapes, category ids with gaps, crowd RLE, images without objects."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
from PIL import ImageDraw

from cvpipe.data.rle import coco_rle_counts
from cvpipe.sources.samples.draw import jitter, mask_of, noisy_background, place_boxes, polygon, save_jpeg
from cvpipe.sources.samples.scale import SAMPLE, each, scaled

# Ids with gaps, as in COCO (1..90); "ring" is declared but has no instances.
CATEGORIES = [
    {"id": 1, "name": "circle", "supercategory": "shape"},
    {"id": 3, "name": "square", "supercategory": "shape"},
    {"id": 7, "name": "triangle", "supercategory": "shape"},
    {"id": 90, "name": "ring", "supercategory": "shape"},
]
COLORS = {1: (220, 40, 40), 3: (40, 80, 220), 7: (40, 170, 60)}
SPLITS = {"train2017": 240, "val2017": 60}  # enough gradient steps for a detector from scratch
# The real-size set: 5,000 images of 640x480, about 36,000 boxes in COCO's 80 categories (their ids)
REAL_SPLITS = {"train2017": 4_000, "val2017": 1_000}
REAL_SIZE = (640, 480)
REAL_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
SHAPES = (1, 3, 7)  # a real-size category is drawn as circle, square or triangle, in a colour of its own


def _outline(cat: int, box: tuple[int, int, int, int]) -> list[tuple[float, float]]:
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if cat == 1:
        return polygon(cx, cy, r, 24)
    if cat == 3:
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return [(cx, y0), (x1, y1), (x0, y1)]


def _annotation(ann_id: int, image_id: int, cat: int, mask: np.ndarray, outline=None, crowd=False) -> dict:
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    bbox = [float(x0), float(y0), float(xs.max() + 1 - x0), float(ys.max() + 1 - y0)]
    if crowd:
        h, w = mask.shape
        segmentation = {"counts": coco_rle_counts(mask), "size": [h, w]}
    else:
        segmentation = [[round(v, 2) for p in outline for v in p]]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cat,
        "segmentation": segmentation,
        "area": float(mask.sum()),
        "bbox": bbox,
        "iscrowd": int(crowd),
    }


def generate(root: Path, rng: np.random.Generator, scale: str | float = SAMPLE, workers: int = 2) -> None:
    """Write ``annotations/instances_{train,val}2017.json`` and the two image folders. ``scale``: the
    sample, or a factor of the real-size set (5,000 images of 640x480, 80 categories)."""
    (root / "annotations").mkdir()
    if scale != SAMPLE:
        _generate_real(root, rng, scale, workers)
        return
    image_id, ann_id = 100, 1
    for split, count in SPLITS.items():
        images, annotations = [], []
        for i in range(count):
            image_id += int(rng.integers(1, 50))
            w, h = int(rng.integers(120, 177)), int(rng.integers(104, 153))
            canvas = noisy_background(rng, (w, h), jitter(rng, (200, 200, 190), 25))
            draw = ImageDraw.Draw(canvas)
            n_objects = 0 if i % 12 == 5 else int(rng.integers(1, 4))
            sizes = [int(rng.integers(26, 46)) for _ in range(n_objects)]
            for box in place_boxes(rng, (w, h), sizes):
                cat = int(rng.choice([1, 3, 7]))
                outline = _outline(cat, box)
                draw.polygon(outline, fill=jitter(rng, COLORS[cat]))
                mask = mask_of((w, h), lambda d, o=outline: d.polygon(o, fill=1))
                annotations.append(_annotation(ann_id, image_id, cat, mask, outline))
                ann_id += 1
            if i % 16 == 9:  # a crowd of small circles, annotated once with RLE, as COCO does
                cx, cy = int(rng.integers(20, w - 20)), int(rng.integers(20, h - 20))
                dots = [(cx + dx, cy + dy) for dx in (-9, 0, 9) for dy in (-6, 6)]
                for x, y in dots:
                    draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=jitter(rng, COLORS[1]))
                mask = mask_of((w, h), lambda d, dots=dots: [d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=1) for x, y in dots])
                annotations.append(_annotation(ann_id, image_id, 1, mask, crowd=True))
                ann_id += 1
            file_name = f"{image_id:012d}.jpg"
            save_jpeg(canvas, root / split / file_name)
            images.append({"id": image_id, "file_name": file_name, "width": w, "height": h, "license": 1})
        _write_instances(root, split, "cvpipe COCO-layout sample", images, annotations, CATEGORIES)


def _write_instances(root: Path, split: str, description: str, images: list, annotations: list, categories: list) -> None:
    """``annotations/instances_<split>.json`` as COCO lays it out."""
    doc = {
        "info": {"description": description, "version": "1.0", "year": 2026},
        "licenses": [{"id": 1, "name": "CC BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"}],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc), encoding="utf-8")


def _generate_real(root: Path, rng: np.random.Generator, scale: float, workers: int) -> None:
    seed = int(rng.integers(2**63))
    categories = [{"id": i, "name": f"shape{i}", "supercategory": "shape"} for i in REAL_IDS]
    ann_id = 1
    for s, (split, total) in enumerate(REAL_SPLITS.items()):
        n = scaled(total, scale)
        images, annotations = [], []
        for i, anns in enumerate(each(partial(_real_image, root / split, (seed, s)), n, workers, f"coco {split}")):
            image_id = _real_id(s, i)
            file_name = f"{image_id:012d}.jpg"
            images.append({"id": image_id, "file_name": file_name, "width": REAL_SIZE[0], "height": REAL_SIZE[1], "license": 1})
            for ann in anns:
                annotations.append({"id": ann_id, "image_id": image_id, **ann})
                ann_id += 1
        _write_instances(root, split, "cvpipe COCO-layout set at the real size", images, annotations, categories)


def _real_id(split: int, i: int) -> int:
    """Image ids with gaps, as COCO's; the splits' ranges apart."""
    return 100 + split * 10_000_000 + 3 * i + i % 2


def _real_image(folder: Path, stream: tuple[int, int], i: int) -> list[dict]:
    """Image ``i`` of a real-size split, written; its annotations (without ids)."""
    rng = np.random.default_rng([*stream, i])
    w, h = REAL_SIZE
    canvas = noisy_background(rng, (w, h), jitter(rng, (200, 200, 190), 25))
    draw = ImageDraw.Draw(canvas)
    n_objects = 0 if i % 12 == 5 else int(rng.integers(3, 14))
    sizes = [int(rng.integers(24, 121)) for _ in range(n_objects)]
    anns = []
    for box in place_boxes(rng, (w, h), sizes):
        c = int(rng.integers(0, len(REAL_IDS)))
        cat, shape = REAL_IDS[c], SHAPES[c % len(SHAPES)]
        outline = _outline(shape, box)
        draw.polygon(outline, fill=jitter(np.random.default_rng([stream[0], 1 << 20, c]), (128, 128, 128), 120))
        mask = mask_of((w, h), lambda d, o=outline: d.polygon(o, fill=1))
        anns.append(_annotation(0, 0, cat, mask, outline))
    if i % 16 == 9:  # a crowd of small circles, annotated once with RLE
        cx, cy = int(rng.integers(20, w - 20)), int(rng.integers(20, h - 20))
        dots = [(cx + dx, cy + dy) for dx in (-9, 0, 9) for dy in (-6, 6)]
        for x, y in dots:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=jitter(rng, COLORS[1]))
        mask = mask_of((w, h), lambda d, dots=dots: [d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=1) for x, y in dots])
        anns.append(_annotation(0, 0, 1, mask, crowd=True))
    save_jpeg(canvas, folder / f"{_real_id(stream[1], i):012d}.jpg")
    for ann in anns:
        del ann["id"], ann["image_id"]
    return anns
