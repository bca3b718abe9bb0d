"""Convert: annotations to YOLO labels or TF Object Detection TFRecords; DSB2018 masks <-> RLE.

    python -m stages.convert {voc,coco,simpsons}-yolo  (--annotations PATH --images DIR | --manifest-dir DIR) --out DIR
        [--classes FILE] [--val-fraction F] [--drop-difficult] [--cls91to80]
    python -m stages.convert {voc,coco}-tfrecord        (same inputs) --out DIR [--shards N]
    python -m stages.convert dsb-masks --annotations stage1_train_labels.csv --images stage1_train --out DIR
    python -m stages.convert dsb-rle --images stage1_train --out labels.csv

``--manifest-dir`` reads a validated manifest folder (data/validated/<dataset>), as dvc.yaml does.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from cvpipe.convert import dataset as det
from cvpipe.convert.dsb import masks_to_rle, rle_to_masks
from cvpipe.convert.tfrecord import write_tfrecords
from cvpipe.convert.yolo import write_yolo
from cvpipe.core import cli
from cvpipe.core.errors import DataError, UsageError
from cvpipe.core.io import write_json
from cvpipe.data.classmap import ClassMap
from cvpipe.data.manifest import WorkPool, read_manifest_dir
from cvpipe.data.parallel import open_workers, read_settings
from cvpipe.sources.voc import read_class_list

log = logging.getLogger(__name__)
DETECTION = {
    "voc-yolo": ("voc", "yolo"),
    "coco-yolo": ("coco", "yolo"),
    "simpsons-yolo": ("simpsons", "yolo"),
    "voc-tfrecord": ("voc", "tfrecord"),
    "coco-tfrecord": ("coco", "tfrecord"),
}
KINDS = (*DETECTION, "dsb-masks", "dsb-rle")


def load_classes(path: Path) -> ClassMap:
    """A class map from ``classes.json`` or a list of names, one a line."""
    if path.suffix == ".json":
        return ClassMap.load(path)
    if not path.is_file():
        raise DataError(path, "class list not found")
    return ClassMap.from_names(read_class_list(path))


def load_detection(
    source: str,
    annotations: Path | None,
    images: Path | None,
    manifest_dir: Path | None,
    classes: Path | None = None,
    cls91to80: bool = False,
    workers: int | WorkPool | None = 1,
    sizes: bool = True,
) -> det.DetectionSet:
    """The detection set from a validated manifest folder, or from the source's own files.

    ``sizes=False``: image sizes are left for the writer to take from the bytes it reads anyway.
    """
    if manifest_dir is not None:
        return det.from_manifest(read_manifest_dir(manifest_dir, source=source, allow_empty=True))
    if annotations is None or images is None:
        raise UsageError("give --annotations and --images, or --manifest-dir")
    if source == "coco":
        return det.from_coco(annotations, images, load_classes(classes) if classes else None, cls91to80, workers, sizes)
    if source == "voc":
        return det.from_voc(annotations, images, classes, workers, sizes)
    return det.from_simpsons(annotations, images, classes, workers)


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
    """Convert; returns the counts (also written to ``conversion.json`` for detection outputs)."""
    if kind not in KINDS:
        raise UsageError(f"unknown conversion {kind!r}; choose one of {list(KINDS)}")
    if kind == "dsb-masks":
        return rle_to_masks(annotations, images, out, workers)
    if kind == "dsb-rle":
        return masks_to_rle(images, out, workers)
    source, target = DETECTION[kind]
    if cls91to80 and source != "coco":
        raise UsageError("--cls91to80 applies to COCO only")
    with det.no_gc():  # many small objects and no cycles: the collector's passes are pure cost here
        dset = load_detection(source, annotations, images, manifest_dir, classes, cls91to80, workers, sizes=target == "yolo")
        det.assign_splits(dset, val_fraction)
        if target == "yolo":
            return write_yolo(dset, out, drop_difficult, workers)
        return write_tfrecords(dset, out, shards, drop_difficult, workers)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stages.convert", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--annotations", type=Path, help="XML folder, COCO JSON, annotation.txt, or DSB labels CSV")
    parser.add_argument("--images", type=Path, help="image folder (DSB: the stage1_train folder)")
    parser.add_argument("--manifest-dir", type=Path, help="validated manifest folder instead of --annotations/--images")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--classes", type=Path, help="class map (classes.json) or class list (one name a line)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="val share when the source has no val split")
    parser.add_argument("--shards", type=int, default=1, help="TFRecord files per split")
    parser.add_argument(
        "--drop-difficult", nargs="?", const=True, default=False, type=lambda v: v.lower() in ("1", "true", "yes"),
        help="leave out objects marked difficult (also --drop-difficult true|false, as dvc.yaml passes it)",
    )
    parser.add_argument("--cls91to80", action="store_true", help="COCO only: the 80-class convention of ultralytics")
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
