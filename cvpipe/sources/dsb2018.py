"""Kaggle Data Science Bowl 2018: ``stage1_train/<id>/images/<id>.png`` and ``masks/*.png``."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from cvpipe.core.errors import DataError
from cvpipe.data.classmap import ClassMap
from cvpipe.data.files import list_images, rel, require_dir
from cvpipe.data.manifest import ImageRef, MaskRef, ReadResult, WorkPool, parallel_map
from cvpipe.data.pil import open_image
from cvpipe.data.rle import dsb_decode
from cvpipe.sources import ReadOptions, Source, SourceCheck

CLASSES = ("nucleus",)


def read(root: Path) -> ReadResult:
    """Every ``stage*_train`` / ``stage*_test`` folder; one image per sample, masks per nucleus."""
    require_dir(root, "DSB2018 root")
    stage_dirs = sorted(d for d in root.glob("stage*_*") if d.is_dir())
    if not stage_dirs:
        raise DataError(root, "no stage1_train/ or stage1_test/ folders")
    images: list[ImageRef] = []
    masks: list[MaskRef] = []
    for stage in stage_dirs:
        split = "train" if stage.name.endswith("train") else "test"
        for sample in sorted(d for d in stage.iterdir() if d.is_dir()):
            image_dir = sample / "images"
            found = list_images(image_dir) if image_dir.is_dir() else []
            if len(found) != 1:
                raise DataError(image_dir, f"expected one image for sample {sample.name}, found {len(found)}")
            image = found[0]
            images.append(ImageRef(file=image, path=rel(image, root), split=split, source_id=sample.name))
            mask_dir = sample / "masks"
            if mask_dir.is_dir():
                masks += [
                    MaskRef(file=m, path=rel(image, root), mask_path=rel(m, root), split=split)
                    for m in list_images(mask_dir)
                ]
    splits = [("train" if s.name.endswith("train") else "test", rel(s, root)) for s in stage_dirs]
    return ReadResult(task="segmentation", classes=ClassMap.from_names(CLASSES), images=images, masks=masks, splits=splits)


def _read(root: Path, options: ReadOptions) -> ReadResult:
    return read(root)


def gate_columns(root: Path, images: Any, masks: Any, workers: int | WorkPool | None) -> dict[str, list]:
    """``rle_error`` when the official ``stage1_train_labels*.csv`` is there (the ``images.rle`` check)."""
    labels = sorted(root.glob("stage1_train_labels*.csv"))
    return {"rle_error": rle_errors(labels[0], root, images, masks, workers)} if labels else {}


def rle_errors(csv_file: Path, root: Path, images: Any, masks: Any, workers: int | WorkPool | None) -> list[str | None]:
    """Does each image's official run-length encoding decode to exactly its mask files?"""
    import pandas as pd

    labels = pd.read_csv(csv_file, dtype=str)
    by_id = labels.groupby("ImageId")["EncodedPixels"].apply(list).to_dict()
    mask_files = masks.groupby("path")["mask_path"].apply(list).to_dict() if masks is not None else {}
    # one plain tuple per image, with its own encodings and masks: what a Dask worker needs, no more
    rows = [(by_id.get(source_id), split, width, height, mask_files.get(path, []))
            for source_id, split, width, height, path
            in images[["source_id", "split", "width", "height", "path"]].itertuples(index=False, name=None)]
    check = functools.partial(_rle_error, csv_name=csv_file.name, root=root)
    return list(parallel_map(check, rows, "run-length encodings", workers))


def _rle_error(row: tuple, csv_name: str, root: Path) -> str | None:
    import pandas as pd

    encodings, split, width, height, mask_paths = row
    if encodings is None or split != "train" or pd.isna(width):
        return None
    h, w = int(height), int(width)
    try:
        decoded = {dsb_decode(e, h, w).tobytes() for e in encodings}
    except ValueError as exc:
        return f"{csv_name}: {exc}"
    on_disk = set()
    for m in mask_paths:
        try:
            on_disk.add((np.asarray(open_image(root / m)) > 0).astype(np.uint8).tobytes())
        except Exception:  # noqa: BLE001 - an unreadable mask is reported by masks.readable
            continue
    if decoded != on_disk:
        return f"{len(decoded - on_disk)} of {len(encodings)} encodings match no mask file"
    return None


SOURCE = Source(
    name="dsb2018", task="segmentation", reader=_read, sample="cvpipe.sources.samples.dsb2018:generate", sample_stream=3,
    converters=("masks", "rle"), kind_prefix="dsb", gate_columns=gate_columns,
    gate_checks=(SourceCheck("images.rle", "images", "ExpectColumnValuesToBeNull", {"column": "rle_error"}, lambda r: r["rle_error"]),),
)
