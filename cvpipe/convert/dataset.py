"""A detection dataset in memory: images with their real sizes and boxes, and the class map.

Built from a validated manifest (the pipeline's route) or from the tables a source's reader returns
(the stand-alone CLI: each layout is parsed in one place), and consumed by the YOLO and TFRecord writers.
"""

from __future__ import annotations

import gc
import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from cvpipe.core.errors import DataError
from cvpipe.data.classmap import ClassEntry, ClassMap
from cvpipe.data.imagesize import image_size
from cvpipe.data.manifest import ManifestDir, ReadResult, WorkPool, parallel_map
from cvpipe.data.splits import check_fraction, unit_hash
from cvpipe.sources import get_source

SPLITS = ("train", "val", "test")


class Box(NamedTuple):
    """A box in pixels as the source gave it; ``annotation`` says where, for messages."""

    class_index: int | None
    source_class: str | None
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    annotation: str
    iscrowd: bool = False
    difficult: bool = False
    truncated: bool = False
    pose: str = ""


@dataclass
class Item:
    """One image: its file, path relative to the dataset (for names), real size, split and boxes."""

    file: Path
    path: str
    width: int
    height: int
    split: str
    source_id: str
    boxes: list[Box] = field(default_factory=list)


@dataclass
class DetectionSet:
    classes: ClassMap
    items: list[Item]
    notes: Counter = field(default_factory=Counter)


# ------------------------------------------------------------------------------------ from the tables


def from_manifest(manifest: ManifestDir) -> DetectionSet:
    """Images and boxes of a (validated) manifest folder; sizes are the probed, real ones."""
    root, unannotated = manifest.root, get_source(manifest.source).unannotated
    boxes = _boxes_by_path(manifest.boxes.to_pylist() if manifest.boxes is not None else [])
    items, notes = [], Counter()
    for row in manifest.images.to_pylist():
        for column in ("locate_error", "annotation_error", "probe_error"):
            if row[column] is not None:
                raise DataError(root / row["path"], f"{column}: {row[column]} (validate the manifest first)")
        if _unannotated(unannotated, row["source_id"], row["path"], boxes):
            notes["images_without_annotation_skipped"] += 1  # never annotated is not the same as empty
            continue
        items.append(Item(root / row["path"], row["path"], row["width"], row["height"], row["split"],
                          row["source_id"] or row["path"], boxes.pop(row["path"], [])))
    _no_orphans(boxes, "the manifest does not have")
    return DetectionSet(manifest.classes, items, notes)


def from_read(found: ReadResult, where: Path, unannotated: str, workers: int | WorkPool | None = 1,
              sizes: bool = True) -> DetectionSet:
    """A source's tables read straight from its files (the stand-alone converter); ``where``: the
    annotations, for messages. ``sizes=False`` leaves width and height 0 for a writer that reads every image."""
    for b in found.boxes or []:
        if b["path"] is None:
            raise DataError(where, f"annotation {b['source_id']} refers to image {b['source_image']}, which it does not list")
    boxes = _boxes_by_path(found.boxes or [])
    items, notes, ids = [], Counter(), {}
    for ref in found.images:
        for error in (ref.locate_error, ref.annotation_error):
            if error is not None:
                raise DataError(ref.file, error)
        if _unannotated(unannotated, ref.source_id, ref.path, boxes):
            notes["images_without_annotation_skipped"] += 1
            continue
        if ref.source_id is not None and ids.setdefault(ref.source_id, ref.path) != ref.path:  # boxes would land on both
            raise DataError(where, f"image id {ref.source_id} is given to both {ids[ref.source_id]!r} and {ref.path!r}")
        split = ref.split if ref.split in SPLITS else "unsplit"
        items.append(Item(ref.file, ref.path, 0, 0, split, ref.source_id or ref.path, boxes.pop(ref.path, [])))
    _no_orphans(boxes, "the images folder does not have")
    dset = DetectionSet(found.classes, items, +notes)
    return _with_sizes(dset, workers) if sizes else dset


def _boxes_by_path(rows: list[dict]) -> dict[str, list[Box]]:
    """Box rows of the box table, by image path, in order; an unparsable one is an error."""
    boxes: dict[str, list[Box]] = {}
    for b in rows:
        if b["error"] is not None:
            raise DataError(b["annotation"], f"unparsable annotation: {b['error']}")
        boxes.setdefault(b["path"], []).append(
            Box(b["class_index"], b["source_class"], b["x_min"], b["y_min"], b["x_max"], b["y_max"],
                b["annotation"], b["iscrowd"], b["difficult"], b["truncated"], b.get("pose") or "")
        )
    return boxes


def _unannotated(rule: str, source_id: str | None, path: str, boxes: dict[str, list[Box]]) -> bool:
    """Whether the source's rule (:attr:`cvpipe.sources.Source.unannotated`) leaves this image out."""
    return (rule == "no_source_id" and source_id is None) or (rule == "no_boxes" and path not in boxes)


def _no_orphans(boxes: dict[str, list[Box]], missing: str) -> None:
    for path, orphans in boxes.items():
        raise DataError(orphans[0].annotation, f"box on image {path!r}, which {missing}")


@contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small objects that form no cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def coco80_classes() -> ClassMap:
    """The 80-class COCO convention (ultralytics' ``cls91to80``): COCO's names by their 91-ids."""
    from ultralytics.data.converter import coco91_to_coco80_class
    from ultralytics.utils import ROOT, YAML

    names = YAML.load(ROOT / "cfg" / "datasets" / "coco.yaml")["names"]
    table = coco91_to_coco80_class()
    return ClassMap(tuple(ClassEntry(idx, names[idx], cid + 1) for cid, idx in enumerate(table) if idx is not None))


def to_coco80(found: ReadResult, where: Path) -> ReadResult:
    """The tables relabelled to the 80-class convention; a category COCO does not have is an error."""
    classes = coco80_classes()
    by_source = {c.source_id: c for c in classes.classes}
    for c in found.classes.classes:
        entry = by_source.get(c.source_id)
        if entry is None or entry.name != c.name:
            raise DataError(where, f"category {c.source_id} {c.name!r} is not COCO's: --cls91to80 is for COCO itself only")
    boxes = [b if b["class_name"] is None else {**b, "class_index": by_source[int(b["source_class"])].index}
             for b in found.boxes or []]
    return replace(found, classes=classes, boxes=boxes)


def _with_sizes(dset: DetectionSet, workers: int | WorkPool | None) -> DetectionSet:
    """Real image sizes from the file headers (never the annotation's claim)."""
    sizes = parallel_map(probe_size, [i.file for i in dset.items], "image sizes", workers, chunk=512)
    for item, (width, height, error) in zip(dset.items, sizes, strict=True):
        if error is not None:
            raise DataError(item.file, error)
        item.width, item.height = width, height
    return dset


def probe_size(file: Path) -> tuple[int | None, int | None, str | None]:
    """(width, height, error) from the header only: sizes are all conversion needs."""
    try:
        return (*image_size(file), None)
    except Exception as exc:  # noqa: BLE001 - reported with the file's name
        return None, None, size_error(exc)


def size_error(exc: Exception) -> str:
    """What to say when an image's size cannot be read."""
    return "image file not found" if isinstance(exc, FileNotFoundError) else f"cannot read the image: {exc}"


# ------------------------------------------------------------------------------------------ splits


def assign_splits(dset: DetectionSet, val_fraction: float) -> None:
    """Keep the source's train/val/test; if there is no val, move a stable hashed ``val_fraction`` of
    the training images there. Hashing the path keeps every image's split when images are added."""
    check_fraction(val_fraction, "convert.val_fraction")
    has_val = any(i.split == "val" for i in dset.items)
    for item in dset.items:
        if item.split == "unsplit":
            item.split = "train"
        if not has_val and item.split == "train" and unit_hash(item.path) < val_fraction:
            item.split = "val"


def output_names(items: list[Item]) -> list[str]:
    """File stems for the output: the image's stem, or its relative path joined by ``__`` when two
    images share a stem (Simpsons' ``pic_0000.jpg`` is in every character's folder)."""
    stems = [Path(i.path).stem for i in items]
    if len({s.casefold() for s in stems}) == len(stems):
        return stems
    names = [str(Path(i.path).with_suffix("")).replace("\\", "/").replace("/", "__").lstrip("._") for i in items]
    first: dict[str, str] = {}
    for item, name in zip(items, names, strict=True):
        other = first.setdefault(name.casefold(), item.path)
        if other != item.path:  # x.jpg and x.png: one label file for two images
            raise DataError(item.file, f"has the same name but for its extension (or case) as {other!r}: "
                            "their label files would collide")
    return names



# ------------------------------------------------------------------------------------- clean boxes


class CleanBox(NamedTuple):
    """A box ready to write: class index, corners ordered and inside the image, in pixels."""

    class_index: int
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    difficult: bool
    truncated: bool
    pose: str
    class_name: str


def clean_boxes(dset: DetectionSet, drop_difficult: bool = False
                ) -> tuple[list[list[CleanBox]], Counter, list[dict], list[list[CleanBox]]]:
    """Per item, the boxes to write; counts of what was changed; the dropped boxes with reasons; and per item its
    crowd regions (:meth:`BoxCleaner.crowd_regions`).

    See :class:`BoxCleaner`; this cleans every item of ``dset`` in order.
    """
    cleaner = BoxCleaner(dset.classes.names, drop_difficult)
    out, dropped, crowds = [], [], []
    for item in dset.items:
        kept, lost = cleaner.clean(item)
        out.append(kept)
        dropped += lost
        crowds.append(cleaner.crowd_regions(item))
    return out, cleaner.counts(), dropped, crowds


class BoxCleaner:
    """Cleans the boxes of one item at a time and counts what it changed.

    Crowd regions are skipped (as COCO's own tools and ultralytics do: they are not objects to learn), and
    given apart by :meth:`crowd_regions` for the evaluation to ignore what is detected on them; corners given in the wrong
    order are ordered; boxes past the image are clipped; boxes of zero size after that, and exact
    duplicates, are dropped and reported. A class missing from the class map is an error. One
    cleaner per thread; :meth:`counts` of several add up.
    """

    FIELDS = ("crowd_skipped", "difficult_dropped", "corners_ordered", "clipped", "zero_size_dropped",
              "duplicates_dropped", "boxes", "background_images")

    def __init__(self, names: list[str], drop_difficult: bool = False) -> None:
        self.names, self.drop_difficult = names, drop_difficult
        self._totals = [0] * len(self.FIELDS)

    def counts(self) -> Counter:
        return +Counter(dict(zip(self.FIELDS, self._totals, strict=True)))

    def crowd_regions(self, item: Item) -> list[CleanBox]:
        """The item's crowd regions (COCO ``iscrowd``), corners ordered and clipped to the image, not counted: what
        COCO's evaluation ignores detections on, rather than counting them as false."""
        out = []
        for b in item.boxes:
            if b.iscrowd and b.class_index is not None:
                x0, x1 = sorted((min(max(b.x_min, 0.0), item.width), min(max(b.x_max, 0.0), item.width)))
                y0, y1 = sorted((min(max(b.y_min, 0.0), item.height), min(max(b.y_max, 0.0), item.height)))
                if x1 > x0 and y1 > y0:
                    out.append(CleanBox(b.class_index, x0, y0, x1, y1, b.difficult, b.truncated, b.pose,
                                        self.names[b.class_index]))
        return out

    def clean(self, item: Item) -> tuple[list[CleanBox], list[dict]]:
        """The item's boxes to write (its width and height must be known) and those dropped, with why."""
        names = self.names
        crowd = difficult = ordered = clipped = zero = duplicates = 0
        kept: list[CleanBox] = []
        dropped: list[dict] = []
        seen: set[tuple] = set()
        w, h = item.width, item.height
        for b in item.boxes:
            if b.class_index is None:
                raise DataError(b.annotation, f"class {b.source_class!r} is not in the class map {names}")
            if not (math.isfinite(b.x_min) and math.isfinite(b.y_min) and math.isfinite(b.x_max) and math.isfinite(b.y_max)):
                raise DataError(b.annotation, f"box ({b.x_min:g}, {b.y_min:g}, {b.x_max:g}, {b.y_max:g}) on {item.path!r} "
                                "has a coordinate that is not a finite number")
            if b.iscrowd:
                crowd += 1
                continue
            if b.difficult and self.drop_difficult:
                difficult += 1
                continue
            x0, x1 = (b.x_min, b.x_max) if b.x_min <= b.x_max else (b.x_max, b.x_min)
            y0, y1 = (b.y_min, b.y_max) if b.y_min <= b.y_max else (b.y_max, b.y_min)
            ordered += x0 != b.x_min or y0 != b.y_min
            cx0, cy0 = min(max(x0, 0.0), w), min(max(y0, 0.0), h)
            cx1, cy1 = min(max(x1, 0.0), w), min(max(y1, 0.0), h)
            clipped += cx0 != x0 or cy0 != y0 or cx1 != x1 or cy1 != y1
            if cx1 <= cx0 or cy1 <= cy0:
                zero += 1
                dropped.append({"annotation": b.annotation, "image": item.path, "reason": "zero size",
                                "box": [b.x_min, b.y_min, b.x_max, b.y_max]})
                continue
            key = (b.class_index, cx0, cy0, cx1, cy1)
            if key in seen:
                duplicates += 1
                dropped.append({"annotation": b.annotation, "image": item.path, "reason": "duplicate box",
                                "box": [b.x_min, b.y_min, b.x_max, b.y_max]})
                continue
            seen.add(key)
            kept.append(CleanBox(b.class_index, cx0, cy0, cx1, cy1, b.difficult, b.truncated, b.pose, names[b.class_index]))
        t = self._totals
        for k, n in enumerate((crowd, difficult, ordered, clipped, zero, duplicates, len(kept), not kept)):
            t[k] += n
        return kept, dropped
