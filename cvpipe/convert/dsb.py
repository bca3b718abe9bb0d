"""DSB2018 run-length encodings to one mask PNG per nucleus, and back."""

from __future__ import annotations

import csv
import functools
import io
from pathlib import Path

import numpy as np
from PIL import Image

from cvpipe.convert import ConvertJob
from cvpipe.core.errors import DataError, UsageError
from cvpipe.core.io import staged_dir, write_text
from cvpipe.data.files import list_images, require_dir
from cvpipe.data.manifest import WorkPool, parallel_map
from cvpipe.data.rle import dsb_decode, dsb_encode
from cvpipe.sources import Source


def _image_size(sample: Path) -> tuple[int, int]:
    found = list_images(sample / "images") if (sample / "images").is_dir() else []
    if len(found) != 1:
        raise DataError(sample / "images", f"expected one image for sample {sample.name}, found {len(found)}")
    with Image.open(found[0]) as im:
        return im.height, im.width


def rle_to_masks(labels: Path, samples: Path, out: Path, workers: int | WorkPool | None = None) -> dict:
    """``stage1_train_labels.csv`` -> ``out/<id>/masks/<n>.png`` (0/255, the image's size)."""
    require_dir(samples, "DSB2018 samples folder")
    by_id: dict[str, list[tuple[int, str]]] = {}
    with open(labels, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != ["ImageId", "EncodedPixels"]:
            raise DataError(labels, f"header is {header}, expected ['ImageId', 'EncodedPixels']", 1)
        for line_no, row in enumerate(reader, start=2):
            if len(row) != 2:
                raise DataError(labels, f"expected 2 fields, got {len(row)}", line_no)
            by_id.setdefault(row[0], []).append((line_no, row[1]))
    with staged_dir(out) as stage:
        write = functools.partial(_write_masks, labels=labels, samples=samples, stage=stage)
        masks = sum(parallel_map(write, [(i, by_id[i]) for i in sorted(by_id)], "dsb masks", workers))
    return {"images": len(by_id), "masks": masks}


def _write_masks(job: tuple[str, list[tuple[int, str]]], labels: Path, samples: Path, stage: Path) -> int:
    """One sample's mask PNGs from its (line, encoding) pairs; returns how many."""
    image_id, encodings = job
    if not (samples / image_id).is_dir():
        raise DataError(labels, f"ImageId {image_id} has no folder in {samples}")
    h, w = _image_size(samples / image_id)
    (stage / image_id / "masks").mkdir(parents=True)
    for k, (line_no, encoded) in enumerate(encodings):
        try:
            mask = dsb_decode(encoded, h, w)
        except ValueError as exc:
            raise DataError(labels, f"ImageId {image_id}: {exc}", line_no) from None
        Image.fromarray(mask * 255, "L").save(stage / image_id / "masks" / f"{k:04d}.png")
    return len(encodings)


def masks_to_rle(samples: Path, out: Path, workers: int | WorkPool | None = None) -> dict:
    """``<id>/masks/*.png`` -> ``out`` CSV (``ImageId,EncodedPixels``), one row per mask, sorted."""
    require_dir(samples, "DSB2018 samples folder")
    sample_dirs = sorted(d for d in samples.iterdir() if (d / "masks").is_dir())

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["ImageId", "EncodedPixels"])
    n = 0
    for rows in parallel_map(_encode_sample, sample_dirs, "dsb run-length encodings", workers):
        writer.writerows(rows)
        n += len(rows)
    write_text(out, buffer.getvalue())
    return {"images": len(sample_dirs), "masks": n}


def _encode_sample(sample: Path) -> list[tuple[str, str]]:
    """(ImageId, EncodedPixels) of each mask of one sample folder."""
    rows = []
    for m in list_images(sample / "masks"):
        try:
            pixels = np.asarray(Image.open(m))
        except Exception as exc:  # noqa: BLE001 - names the file
            raise DataError(m, f"cannot read the mask: {exc}") from None
        rows.append((sample.name, dsb_encode(pixels > 0)))
    return rows


def to_masks(source: Source, job: ConvertJob) -> dict:
    """The ``masks`` target: ``--annotations`` (the labels CSV) and ``--images`` (the samples folder)."""
    if job.annotations is None or job.images is None:
        raise UsageError(f"{source.prefix}-masks converts the source's own files: give --annotations and --images")
    return rle_to_masks(job.annotations, job.images, job.out, job.workers)


def to_rle(source: Source, job: ConvertJob) -> dict:
    """The ``rle`` target: ``--images`` (the samples folder) to the CSV ``--out``."""
    if job.images is None:
        raise UsageError(f"{source.prefix}-rle converts the source's own files: give --images")
    return masks_to_rle(job.images, job.out, job.workers)
