"""Convert: a dataset to the formats its source offers (YOLO labels, TFRecords, masks <-> RLE...).

    python -m stages.convert TARGET --manifest-dir DIR --out DIR [--val-fraction F] [--drop-difficult] [--shards N]
    python -m stages.convert SOURCE-TARGET (--annotations PATH --images DIR | --manifest-dir DIR) --out DIR
        [--classes FILE] [--val-fraction F] [--drop-difficult] [--shards N] [--cls91to80]

A plain TARGET (``yolo``) converts a validated manifest folder (data/validated/<dataset>), whose
dataset.json names the source, as dvc.yaml does. ``SOURCE-TARGET`` kinds are the targets each source
offers (cvpipe.sources: ``Source.converters``); with ``--annotations``/``--images`` they read the
source's own files without a manifest.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from cvpipe.convert import TARGETS, ConvertJob, convert
from cvpipe.core import cli
from cvpipe.core.errors import ParamsError, UsageError
from cvpipe.core.io import write_json
from cvpipe.data.manifest import WorkPool, read_manifest_dir
from cvpipe.data.parallel import open_workers, read_settings
from cvpipe.sources import conversion_kinds, get_source

log = logging.getLogger(__name__)


def kinds() -> list[str]:
    """Every kind ``run`` takes: the plain targets, then ``<source>-<target>`` for each source's converters."""
    return [*TARGETS, *conversion_kinds()]


def run(
    kind: str,
    out: Path,
    annotations: Path | None = None,
    images: Path | None = None,
    manifest_dir: Path | None = None,
    classes: Path | None = None,
    val_fraction: float = 0.2,
    shards: int = 1,
    drop_difficult: bool = False,
    cls91to80: bool = False,
    workers: int | WorkPool | None = 1,
) -> dict:
    """Convert; returns the counts (also written to ``conversion.json`` for box outputs)."""
    named = conversion_kinds()
    if kind not in TARGETS and kind not in named:
        raise UsageError(f"unknown conversion {kind!r}; choose one of {kinds()}")
    source_name, target = named.get(kind, (None, kind))
    manifest = None
    if manifest_dir is not None:
        manifest = read_manifest_dir(manifest_dir, source=source_name, allow_empty=True)
    elif source_name is None:
        raise UsageError(f"{kind} converts a manifest: give --manifest-dir, or a kind <source>-{kind} with --annotations/--images")
    source = get_source(source_name or manifest.source)
    if source_name is None and target not in source.converters:
        offered = ", ".join(source.converters) or "none"
        raise ParamsError(f"convert.{target}", f"lists {manifest_dir.name}, whose source {source.name} offers no {target} "
                                               f"conversion (it offers: {offered})")
    job = ConvertJob(out, manifest, annotations, images, classes, val_fraction, shards, drop_difficult, cls91to80, workers)
    return convert(source, target, job)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stages.convert", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=kinds())
    parser.add_argument("--annotations", type=Path, help="the source's annotations (a folder, a file, a labels CSV)")
    parser.add_argument("--images", type=Path, help="the source's image (or samples) folder")
    parser.add_argument("--manifest-dir", type=Path, help="validated manifest folder instead of --annotations/--images")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--classes", type=Path, help="class map (classes.json) or class list (one name a line)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="val share when the source has no val split")
    parser.add_argument("--shards", type=int, default=1, help="TFRecord files per split")
    parser.add_argument(
        "--drop-difficult", nargs="?", const=True, default=False, type=lambda v: v.lower() in ("1", "true", "yes"),
        help="leave out objects marked difficult (also --drop-difficult true|false, as dvc.yaml passes it)",
    )
    parser.add_argument("--cls91to80", action="store_true", help="the 80-class convention of ultralytics (sources that take it)")
    parser.add_argument(
        "--workers", type=int, default=1,
        help="threads for file I/O (default 1: the work is CPU-bound Python; more helps on a slow, cold disk)",
    )
    parser.add_argument("--params", type=Path, help="its `dask` section: where large sets run (default: ./params.yaml if any)")
    parser.add_argument("--metrics", type=Path, help="write the counts here as JSON (for dvc metrics)")
    return parser


def execute(args: argparse.Namespace) -> dict:
    with open_workers(read_settings(args.params), args.workers) as workers:
        report = run(args.kind, args.out, args.annotations, args.images, args.manifest_dir, args.classes,
                     args.val_fraction, args.shards, args.drop_difficult, args.cls91to80, workers)
    counts = {k: v for k, v in report.items() if k != "dropped"}
    if args.metrics:
        write_json(args.metrics, counts)
    log.info("%s -> %s: %s", args.kind, args.out, json.dumps(counts, sort_keys=True))
    for d in report.get("dropped", [])[:10]:
        log.warning("dropped %s: %s %s", d["annotation"], d["reason"], d["box"])
    return counts


def main(argv: list[str] | None = None) -> int:
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
