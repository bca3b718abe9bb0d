"""Ingest: read a dataset in its native layout; write its manifest, box/mask table and class map.

    python -m stages.ingest --source NAME --root DIR --out DIR   (NAME: a source of cvpipe.sources.SOURCES)
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from cvpipe.core import cli
from cvpipe.core.errors import ParamsError
from cvpipe.core.io import staged_dir, write_json
from cvpipe.data.manifest import (
    BOX_SCHEMA,
    MANIFEST_SCHEMA,
    MASK_SCHEMA,
    Confinement,
    WorkPool,
    parallel_map,
    probe_image,
    probe_mask,
    write_table,
)
from cvpipe.data.parallel import open_workers, read_settings
from cvpipe.sources import SOURCES, ReadOptions, get_source

log = logging.getLogger(__name__)
BAD_ANNOTATION_POLICIES = ("stop", "record")


@dataclass(frozen=True)
class IngestResult:
    """Counts of what :func:`run` wrote (``--metrics`` saves them for ``dvc metrics show``)."""

    source: str
    task: str
    images: int
    classes: int
    boxes: int | None
    masks: int | None
    unreadable_images: int
    images_per_split: dict[str, int]
    notes: dict[str, int]


def run(
    source: str,
    root: Path,
    out: Path,
    classes_file: Path | None = None,
    workers: int | WorkPool | None = None,
    on_bad_annotation: str = "stop",
) -> IngestResult:
    """Read ``root`` as ``source`` and write ``manifest.parquet``, ``classes.json`` and more to ``out``.

    ``on_bad_annotation``: ``stop`` raises on a malformed annotation; ``record`` keeps it in the
    tables (``annotation_error`` / ``error`` columns) for the data gate to report or quarantine.
    """
    if on_bad_annotation not in BAD_ANNOTATION_POLICIES:
        raise ParamsError("ingest.on_bad_annotation", f"is {on_bad_annotation!r}; choose one of {list(BAD_ANNOTATION_POLICIES)}")
    found = get_source(source).read(root, ReadOptions(strict=on_bad_annotation == "stop", classes_file=classes_file))
    confine = Confinement(root)

    splits: Counter[str] = Counter()
    unreadable = 0

    def rows():
        nonlocal unreadable
        for row in parallel_map(functools.partial(probe_image, confine=confine), found.images, f"{source} images", workers):
            splits[row["split"]] += 1
            unreadable += any(row[k] is not None for k in ("locate_error", "annotation_error", "probe_error"))
            yield row

    with staged_dir(out) as staging:  # the folder is replaced as one unit: never new tables beside old ones
        counts = {"manifest.parquet": write_table(rows(), MANIFEST_SCHEMA, staging / "manifest.parquet")}
        if found.boxes is not None:
            counts["boxes.parquet"] = write_table(found.boxes, BOX_SCHEMA, staging / "boxes.parquet")
        if found.masks is not None:
            masks = parallel_map(functools.partial(probe_mask, confine=confine), found.masks, f"{source} masks", workers)
            counts["masks.parquet"] = write_table(masks, MASK_SCHEMA, staging / "masks.parquet")
        found.classes.save(staging / "classes.json")
        declared: dict[str, list[str]] = {}
        for split, where in found.splits:
            declared.setdefault(split, []).append(where)
        info = {"source": source, "task": found.task, "root": root.as_posix(), "rows": counts,
                "splits": {split: ", ".join(sorted(wheres)) for split, wheres in sorted(declared.items())}}
        write_json(staging / "dataset.json", info)
    n_images, n_boxes, n_masks = counts["manifest.parquet"], counts.get("boxes.parquet"), counts.get("masks.parquet")

    result = IngestResult(
        source=source,
        task=found.task,
        images=n_images,
        classes=len(found.classes),
        boxes=n_boxes,
        masks=n_masks,
        unreadable_images=unreadable,
        images_per_split=dict(sorted(splits.items())),
        notes=found.notes,
    )
    return result


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stages.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, choices=list(SOURCES), help="native layout of the dataset")
    parser.add_argument("--root", required=True, type=Path, help="dataset folder as downloaded")
    parser.add_argument("--out", required=True, type=Path, help="folder for manifest.parquet and classes.json")
    parser.add_argument("--classes", type=Path, help="class list (one name a line, or classes.json), for layouts that take one")
    parser.add_argument("--workers", type=int, help="threads for hashing and probing (default: all cores)")
    parser.add_argument("--params", type=Path, help="its `dask` section: where large sets run (default: ./params.yaml if any)")
    parser.add_argument("--metrics", type=Path, help="write the counts here as JSON (for dvc metrics)")
    parser.add_argument(
        "--on-bad-annotation", choices=BAD_ANNOTATION_POLICIES, default="stop",
        help="stop at a malformed annotation (default), or record it for the data gate",
    )
    return parser


def execute(args: argparse.Namespace) -> IngestResult:
    with open_workers(read_settings(args.params), args.workers) as workers:
        result = run(args.source, args.root, args.out, args.classes, workers, args.on_bad_annotation)
    if args.metrics:
        write_json(args.metrics, asdict(result))
    box_or_mask = f", {result.boxes} boxes" if result.boxes is not None else ""
    box_or_mask += f", {result.masks} masks" if result.masks is not None else ""
    log.info("%s: %d images%s, %d classes -> %s", args.source, result.images, box_or_mask, result.classes, args.out)
    if result.unreadable_images:
        log.warning("%d images could not be located or read; see the *_error columns of the manifest", result.unreadable_images)
    return result


def main(argv: list[str] | None = None) -> int:
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
