"""Predict: a registered model on a folder (or glob) of new images, in batches.

    python -m stages.predict --model NAME[@ALIAS|/VERSION] --images DIR_OR_GLOB --out DIR [--batch-size 16]
                             [--device auto|cpu|cuda:N] [--explain]

The model is read from the registry (``MLFLOW_TRACKING_URI`` honoured; default alias ``champion``) and its
task predicts as the registered pyfunc does. ``DIR`` receives, as one unit:

- ``predictions.csv``: ``file`` and the task's columns, one row per prediction (a class with its score and
  top k; a box in pixels with class and score; an instance mask, run-length encoded: each task says, README "Predicting");
- ``predictions.json``: the model's name, version, alias and lineage tags, and the counts;
- ``annotated/<file>.png``: each image with what was found drawn on it, and ``overview.png``, a contact
  sheet of the first of them;
- ``skipped.csv``: files that could not be read as images, with the reason (the rest are predicted);
- with ``--explain``, ``explained/<file>.png``: why the model answered as it did, where its task can say
  (``Task.explanation`` names what it draws; README "Predicting").

Images are streamed a batch at a time (a folder of 100,000 files is never in memory) with a progress bar.
An unknown model, alias or version, or a folder with no image, is one ``error:`` line and writes nothing.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cvpipe.core import cli
from cvpipe.core.annotate import contact_sheet
from cvpipe.core.errors import DataError, UsageError
from cvpipe.core.io import staged_dir, write_bytes, write_json, write_text
from cvpipe.core.plots import csv_text
from cvpipe.data.files import IMAGE_SUFFIXES
from cvpipe.mlops.registry import DEFAULT_ROOT, find_registered, open_store
from cvpipe.tasks import get_task

log = logging.getLogger(__name__)
OVERVIEW_MAX = 36  # images on the contact sheet


@dataclass(frozen=True)
class PredictResult:
    name: str
    version: str
    images: int  # predicted
    skipped: int  # not readable as images
    rows: int  # of predictions.csv
    out: Path


def find_images(images: str) -> tuple[Path, list[Path]]:
    """(the folder names are relative to, the image files) of a folder (searched recursively) or a glob, sorted."""
    folder = Path(images)
    if folder.is_dir():
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        base = folder
    else:
        files = sorted(Path(p) for p in glob.glob(images, recursive=True) if Path(p).is_file())
        base = Path(os.path.commonpath([str(f.parent) for f in files])) if files else folder
    if not files:
        raise DataError(Path(images), "no image file there (a folder is searched for " + ", ".join(sorted(IMAGE_SUFFIXES))
                        + "; a glob matched nothing)")
    return base, files


def _batches(files: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(files), size):
        yield files[start:start + size]


def _read(path: Path) -> np.ndarray:
    """uint8 RGB pixels of an image file, opened as the models open the bytes they are sent."""
    from cvpipe.data.pil import open_image

    with open_image(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def run(model: str, images: str, out: Path, batch_size: int = 16, device: str = "auto", explain: bool = False,
        mlruns: Path = DEFAULT_ROOT) -> PredictResult:
    """Predict ``images`` with the registered ``model`` on ``device`` into ``out`` (see the module's docstring)."""
    from mlflow import MlflowClient
    from PIL import Image, UnidentifiedImageError
    from tqdm import tqdm

    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        raise UsageError(f"--device: {device!r} is not a device; choose auto, cpu, cuda or cuda:N")
    base, files = find_images(images)
    store = open_store(mlruns, write=False)
    registered = find_registered(MlflowClient(), store, model)
    implementation = get_task(registered.task)
    if explain and implementation.explanation is None:
        raise UsageError(f"--explain: {registered.ref.name} is a {registered.task} model, and that task draws no "
                         "explanation of its answers; predict without --explain")
    loaded = registered.load(device)
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    overview: list[tuple[np.ndarray, str, str]] = []
    used: set[Path] = set()
    with staged_dir(out) as staging:
        for batch in tqdm(list(_batches(files, batch_size)), desc=f"predict {registered.ref.name}", unit="batch"):
            read, pixels = [], []
            for path in batch:
                try:
                    pixels.append(_read(path))
                    read.append(path)
                except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
                    skipped.append({"file": path.relative_to(base).as_posix(), "reason": str(exc) or type(exc).__name__})
            explained = implementation.explain(loaded, pixels) if explain and pixels else [None] * len(pixels)
            for path, predicted, why in zip(read, implementation.predict(loaded, pixels) if pixels else [], explained, strict=True):
                name = path.relative_to(base).as_posix()
                rows += [{"file": name} | row for row in predicted.rows]
                target = _annotated_name(Path(name), used)
                write_bytes(staging / "annotated" / target, _png(predicted.picture))
                if why is not None:
                    write_bytes(staging / "explained" / target, _png(why))
                if len(overview) < OVERVIEW_MAX:
                    overview.append((_thumbnail(predicted.picture), name, predicted.caption))  # small, kept
        columns = ["file", *implementation.prediction_columns]
        write_text(staging / "predictions.csv", csv_text(rows, columns))
        write_text(staging / "skipped.csv", csv_text(skipped, ["file", "reason"]))
        predicted_count = len(files) - len(skipped)
        title = f"{registered.ref.name} v{registered.number}: {predicted_count} images" + \
            (f" (first {len(overview)})" if predicted_count > len(overview) else "")
        write_bytes(staging / "overview.png", contact_sheet(overview, title))
        write_json(staging / "predictions.json", {
            "model": registered.ref.name, "version": registered.number, "alias": registered.ref.alias,
            "task": registered.task, "device": str(loaded.device), "explained": implementation.explanation if explain else None,
            "images": predicted_count, "skipped": len(skipped), "rows": len(rows),
            "source": str(images), "lineage": {k: v for k, v in registered.version.tags.items()
                                               if k.startswith(("dvc.", "git.", "data.", "params.")) or k == "dataset"},
        })
    return PredictResult(registered.ref.name, registered.number, predicted_count, len(skipped), len(rows), out)


def _annotated_name(name: Path, used: set[Path]) -> Path:
    """``<file>.png`` beside where the file was, or ``<file><suffix>.png`` where two files share a stem."""
    target = name.with_suffix(".png")
    if target in used:
        target = name.with_name(name.name + ".png")
    used.add(target)
    return target


def _png(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)  # zlib's fastest: a sixth of the time of its default
    return buffer.getvalue()


def _thumbnail(pixels: np.ndarray, size: int = 180) -> np.ndarray:
    from PIL import Image

    image = Image.fromarray(pixels)
    image.thumbnail((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image)


def get_args_parser(prog: str = "python -m stages.predict", out_help: str | None = None) -> argparse.ArgumentParser:
    """The command line of ``python -m stages.predict`` (``out_help``: ``--out`` is optional, for a caller with a default)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="NAME[@ALIAS|/VERSION] of a registered model (alias default: champion)")
    parser.add_argument("--images", required=True, help="a folder (searched recursively) or a glob of image files")
    parser.add_argument("--out", type=Path, required=out_help is None, help=out_help or "the folder to write (replaced as one unit)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=16, help="images per forward pass (default 16)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu, cuda or cuda:N")
    parser.add_argument("--explain", action="store_true", help="also write explained/<file>.png: why, where the model's task can say")
    return parser


def execute(args: argparse.Namespace) -> PredictResult:
    result = run(args.model, args.images, args.out, args.batch_size, args.device, args.explain)
    log.info("%s version %s: %d images predicted (%d rows), %d skipped -> %s", result.name, result.version, result.images,
             result.rows, result.skipped, result.out)
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m stages.predict``: 0, or 1 with one error line."""
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
