"""Converters: boxes to YOLO labels and TF Object Detection TFRecords, masks <-> run-length encodings.

Each source offers some targets (:attr:`cvpipe.sources.Source.converters`); :func:`convert` runs one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from cvpipe.core.errors import UsageError
from cvpipe.data.manifest import ManifestDir, WorkPool
from cvpipe.sources import SOURCES, Source, get_source

# target -> "module:function" taking (Source, ConvertJob) and returning the counts
TARGETS: dict[str, str] = {
    "yolo": "cvpipe.convert.detection:to_yolo",
    "tfrecord": "cvpipe.convert.detection:to_tfrecord",
    "masks": "cvpipe.convert.dsb:to_masks",  # a labels CSV of run-length encodings -> one PNG per object
    "rle": "cvpipe.convert.dsb:to_rle",  # and back
}


@dataclass(frozen=True)
class ConvertJob:
    """What to convert and how: a validated manifest, or a source's own files (``annotations``, ``images``)."""

    out: Path
    manifest: ManifestDir | None = None
    annotations: Path | None = None
    images: Path | None = None
    classes: Path | None = None  # a class map (classes.json) or list for the stand-alone readers
    val_fraction: float = 0.2
    shards: int = 1
    drop_difficult: bool = False
    cls91to80: bool = False
    workers: int | WorkPool | None = 1


def convert(source: Source, target: str, job: ConvertJob) -> dict:
    """Run the ``target`` converter on the job; a target or option the source does not offer is a clear error."""
    if target not in source.converters:
        offered = ", ".join(source.converters) or "none"
        raise UsageError(f"source {source.name!r} offers no {target} conversion (it offers: {offered})")
    if job.cls91to80 and "cls91to80" not in source.options:
        raise UsageError(f"--cls91to80 applies to {', '.join(n for n in SOURCES if 'cls91to80' in get_source(n).options)} only")
    module, function = TARGETS[target].split(":")
    return getattr(importlib.import_module(module), function)(source, job)
