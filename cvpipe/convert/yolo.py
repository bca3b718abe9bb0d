"""YOLO labels that ultralytics trains from as they are: ``images/``, ``labels/``, ``data.yaml``.

COCO's crowd regions are no objects to learn, so they are not in ``labels/``; they go, in the same
format, to ``crowd/<split>/<image>.txt`` (only for images that have some), which ultralytics never
reads and the evaluation uses to ignore detections on a crowd, as COCO's evaluation does.
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from pathlib import Path

import yaml

from cvpipe.convert.dataset import SPLITS, CleanBox, DetectionSet, clean_boxes, no_gc, output_names
from cvpipe.convert.output import place_image, write_class_files
from cvpipe.core.io import staged_dir, write_text
from cvpipe.data.manifest import WorkPool, parallel_map


def label_text(boxes: list[CleanBox], width: int, height: int) -> str:
    """``class cx cy w h`` per line, normalised by the real image size; empty for a background image."""
    sx, sy = 1.0 / width, 1.0 / height
    return "".join(
        f"{c:d} {(x0 + x1) * 0.5 * sx:.7f} {(y0 + y1) * 0.5 * sy:.7f} {(x1 - x0) * sx:.7f} {(y1 - y0) * sy:.7f}\n"
        for c, x0, y0, x1, y1, *_ in boxes
    )


def write_yolo(dset: DetectionSet, out: Path, drop_difficult: bool = False, workers: int | WorkPool | None = 1) -> dict:
    """Write the dataset under ``out`` (replacing it atomically); returns the counts, also in conversion.json.

    Images are linked, but a JPEG whose EXIF orientation is not 1 is copied with the tag set to 1: labels
    refer to the stored pixels, and ultralytics would otherwise rotate the image under them (cvpipe.data.exif).
    """
    with no_gc():
        boxes, counts, dropped, crowds = clean_boxes(dset, drop_difficult)
    names = output_names(dset.items)
    with staged_dir(out) as stage:
        splits = sorted({i.split for i in dset.items}, key=SPLITS.index)
        for split in splits:
            (stage / "images" / split).mkdir(parents=True)
            (stage / "labels" / split).mkdir(parents=True)

        base = str(stage)
        jobs = [(item.file, item.split, name, kept, item.width, item.height)
                for item, name, kept in zip(dset.items, names, boxes, strict=True)]
        write = functools.partial(_write_item, base=base)
        links = Counter(parallel_map(write, jobs, "yolo", workers, chunk=256))
        for item, name, regions in zip(dset.items, names, crowds, strict=True):
            if regions:
                (stage / "crowd" / item.split).mkdir(parents=True, exist_ok=True)
                write_text(stage / "crowd" / item.split / f"{name}.txt", label_text(regions, item.width, item.height))
        data = {"path": out.as_posix(), **{s: f"images/{s}" for s in splits},
                "nc": len(dset.classes), "names": dict(enumerate(dset.classes.names))}
        write_text(stage / "data.yaml", yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        write_class_files(dset.classes, stage)
        report = {
            "images": dict(Counter(i.split for i in dset.items)),
            "image_links": dict(links),
            **dict(sorted((counts + dset.notes).items())),
            "dropped": dropped,
        }
        write_text(stage / "conversion.json", json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def _write_item(job: tuple[Path, str, str, list[CleanBox], int, int], base: str) -> str:
    """One image's label file and image link (or upright copy); returns how the image was placed."""
    file, split, name, boxes, width, height = job
    fd = os.open(f"{base}/labels/{split}/{name}.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, label_text(boxes, width, height).encode())
    finally:
        os.close(fd)
    return place_image(file, f"{base}/images/{split}/{name}{file.suffix}")
