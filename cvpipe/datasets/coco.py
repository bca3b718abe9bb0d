"""COCO: ``annotations/instances_<split>.json`` with images in ``<split>/``."""

from __future__ import annotations

import json
from pathlib import Path

from cvpipe.classmap import ClassMap
from cvpipe.datasets import rel, require_dir, split_name
from cvpipe.errors import DataError
from cvpipe.manifest import ImageRef, ReadResult


def load_json(path: Path) -> dict:
    """Parse a COCO JSON file; a syntax error names the file, line and column."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"malformed JSON: {exc.msg} (column {exc.colno})", exc.lineno) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(path, "not a COCO annotation file: top level is not an object")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(path, f"not a COCO annotation file: no '{key}' list")
    return data


def _categories(path: Path, data: dict) -> dict[int, str]:
    try:
        return {int(c["id"]): str(c["name"]) for c in data["categories"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(path, f"malformed category entry: {exc!r}") from exc


def read(root: Path, strict: bool = True) -> ReadResult:
    """Read every ``annotations/instances_*.json`` split of a COCO-layout folder.

    ``strict=False`` records a malformed annotation entry (its ``error``) instead of stopping.
    """
    require_dir(root, "COCO root")
    ann_dir = require_dir(root / "annotations", "COCO annotations folder")
    files = sorted(ann_dir.glob("instances_*.json"))
    if not files:
        raise DataError(ann_dir, "no instances_<split>.json files")
    parsed = [(f, load_json(f)) for f in files]

    categories: dict[int, str] = {}
    for f, data in parsed:
        for cid, name in _categories(f, data).items():
            if categories.setdefault(cid, name) != name:
                raise DataError(f, f"category {cid} is {name!r} here but {categories[cid]!r} before")
    classes = ClassMap.from_source_ids(categories.items())

    images: list[ImageRef] = []
    boxes: list[dict] = []
    for f, data in parsed:
        split_dir = f.stem.removeprefix("instances_")
        split = split_name(split_dir)
        by_id: dict[int, str] = {}
        for entry in data["images"]:
            try:
                image_id, file_name = int(entry["id"]), str(entry["file_name"])
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f, f"malformed image entry {entry!r}: {exc!r}") from exc
            file = root / split_dir / file_name
            by_id[image_id] = rel(file, root)
            images.append(
                ImageRef(
                    file=file,
                    path=by_id[image_id],
                    split=split,
                    source_id=str(image_id),
                    declared_width=_int_or_none(entry.get("width")),
                    declared_height=_int_or_none(entry.get("height")),
                )
            )
        for ann in data.get("annotations", []):
            try:
                boxes.append(_box(f, root, ann, by_id, categories, classes, split))
            except DataError as exc:
                if strict:
                    raise
                boxes.append(_bad_box(f, root, ann, by_id, split, exc))
    return ReadResult(task="detection", classes=classes, images=images, boxes=boxes)


def _box(f, root, ann, by_id, categories, classes, split) -> dict:
    try:
        x, y, w, h = (float(v) for v in ann["bbox"])
        image_id, category_id = int(ann["image_id"]), int(ann["category_id"])
    except (KeyError, TypeError, ValueError) as exc:
        ann_id = ann.get("id") if isinstance(ann, dict) else None
        raise DataError(f, f"malformed annotation {ann_id!r}: {exc!r}") from exc
    known = category_id in categories
    return {
        "path": by_id.get(image_id),  # null: refers to an image the file does not list
        "split": split,
        "class_index": classes.index_of_source_id(category_id) if known else None,
        "class_name": categories.get(category_id),
        "x_min": x,
        "y_min": y,
        "x_max": x + w,
        "y_max": y + h,
        "iscrowd": bool(ann.get("iscrowd", 0)),
        "difficult": False,
        "truncated": False,
        "annotation": rel(f, root),
        "source_id": str(ann.get("id")),
        "source_class": str(category_id),
        "source_image": str(image_id),
        "error": None,
    }


def _bad_box(f: Path, root: Path, ann, by_id: dict[int, str], split: str, exc: DataError) -> dict:
    ann = ann if isinstance(ann, dict) else {}
    try:
        path = by_id.get(int(ann.get("image_id")))
    except (TypeError, ValueError):
        path = None
    nan = float("nan")
    return {
        "path": path, "split": split, "class_index": None, "class_name": None,
        "x_min": nan, "y_min": nan, "x_max": nan, "y_max": nan,
        "iscrowd": bool(ann.get("iscrowd", 0)), "difficult": False, "truncated": False,
        "annotation": rel(f, root), "source_id": str(ann.get("id")),
        "source_class": str(ann.get("category_id")), "source_image": str(ann.get("image_id")),
        "error": exc.message,
    }


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
