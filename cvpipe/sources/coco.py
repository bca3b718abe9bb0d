"""COCO: ``annotations/instances_<split>.json`` with images in ``<split>/``."""

from __future__ import annotations

import json
import math
from pathlib import Path

from cvpipe.core.errors import DataError
from cvpipe.data.classmap import ClassMap
from cvpipe.data.files import rel, require_dir, split_name
from cvpipe.data.manifest import ImageRef, ReadResult
from cvpipe.sources import ReadOptions, Source


class JsonConstant(str):
    """``NaN``, ``Infinity`` or ``-Infinity`` in a JSON file: not JSON numbers, so never taken as numbers."""


def load_json(path: Path) -> dict:
    """Parse a COCO JSON file; a syntax error names the file, line and column."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f, parse_constant=JsonConstant)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"malformed JSON: {exc.msg} (column {exc.colno})", exc.lineno) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(path, "not a COCO annotation file: top level is not an object")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(path, f"not a COCO annotation file: no '{key}' list")
    if not isinstance(data.get("annotations", []), list):
        raise DataError(path, "not a COCO annotation file: 'annotations' is not a list")
    return data


# One rule for types: a value of the wrong JSON type is named, never coerced ("0" is not 0).

def shown(value) -> str:
    """A JSON value as the file has it: ``"0"`` for a string, ``Infinity``, ``true``."""
    if isinstance(value, JsonConstant):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _field(entry: dict, key: str, kind: str, required: bool = True):
    """``entry[key]`` if it is of ``kind`` (int, positive int, str, 0/1), else a DataError message."""
    if key not in entry or entry[key] is None:
        if required:
            raise _Wrong(f"no {key!r}")
        return None
    value = entry[key]
    ok = {
        "int": _is_int(value),
        "size": _is_int(value) and value > 0,
        "str": isinstance(value, str) and not isinstance(value, JsonConstant) and value != "",
        "flag": _is_int(value) and value in (0, 1),
    }[kind]
    if not ok:
        wanted = {"int": "an integer", "size": "a positive integer", "str": "a non-empty string", "flag": "0 or 1"}[kind]
        raise _Wrong(f"{key} is {shown(value)}, expected {wanted}")
    return value


class _Wrong(ValueError):
    """A field of the wrong type or missing; the caller says which entry."""


def _entry(entry, *fields: tuple[str, str]) -> tuple:
    """The ``(key, kind)`` fields of a JSON object, each checked by :func:`_field`."""
    if not isinstance(entry, dict):
        raise _Wrong(f"is {shown(entry)}, expected an object")
    return tuple(_field(entry, key, kind) for key, kind in fields)


def _categories(path: Path, data: dict) -> dict[int, str]:
    out: dict[int, str] = {}
    for n, c in enumerate(data["categories"]):
        try:
            cid, name = _entry(c, ("id", "int"), ("name", "str"))
        except _Wrong as exc:
            raise DataError(path, f"categories[{n}]: {exc}") from None
        if cid in out:
            raise DataError(path, f"categories[{n}]: id {cid} is also category {out[cid]!r}")
        out[cid] = name
    return out


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
    index = {cid: classes.index_of_source_id(cid) for cid in categories}

    images: list[ImageRef] = []
    boxes: list[dict] = []
    splits: list[tuple[str, str]] = []
    for f, data in parsed:
        split_dir = f.stem.removeprefix("instances_")
        split = split_name(split_dir)
        splits.append((split, rel(f, root)))
        found = read_instances(f, data, root, root / split_dir, split, categories, index, strict)
        images += found[0]
        boxes += found[1]
    return ReadResult(task="detection", classes=classes, images=images, boxes=boxes, splits=splits)


def read_standalone(path: Path, image_dir: Path, options: ReadOptions) -> ReadResult:
    """One instances file and its image folder, as ``stages.convert`` takes them without a manifest.

    ``options.classes_file`` (classes.json or a list of names) gives the class map; boxes are named
    ``<file>#<annotation id>`` in messages. Always strict.
    """
    require_dir(image_dir, "COCO image folder")
    data = load_json(path)
    categories = _categories(path, data)
    if options.classes_file is not None:
        classes = ClassMap.from_file(options.classes_file)
        by_source = {c.source_id: c.index for c in classes.classes if c.source_id is not None}
        by_name = {c.name: c.index for c in classes.classes}
        index = {cid: by_source.get(cid, by_name.get(name)) for cid, name in categories.items()}
    else:
        classes = ClassMap.from_source_ids(categories.items())
        index = {cid: classes.index_of_source_id(cid) for cid in categories}
    split = split_name(path.stem.removeprefix("instances_"))
    images, boxes = read_instances(path, data, image_dir, image_dir, split, categories, index, strict=True)
    for b in boxes:
        b["annotation"] = f"{path.name}#{b['source_id']}"
    return ReadResult(task="detection", classes=classes, images=images, boxes=boxes, splits=[(split, path.name)])


def read_instances(f: Path, data: dict, root: Path, image_dir: Path, split: str, categories: dict[int, str],
                   index: dict[int, int | None], strict: bool) -> tuple[list[ImageRef], list[dict]]:
    """The images and boxes of one parsed instances file; ``index``: class index by category id."""
    images: list[ImageRef] = []
    boxes: list[dict] = []
    by_id: dict[int, str] = {}
    for n, entry in enumerate(data["images"]):
        try:
            image_id, file_name = _entry(entry, ("id", "int"), ("file_name", "str"))
        except _Wrong as exc:
            raise DataError(f, f"images[{n}]: {exc}") from None
        problem, size = None, [None, None]
        for k, key in enumerate(("width", "height")):
            try:
                size[k] = _field(entry, key, "size", required=False)
            except _Wrong as exc:
                if strict:
                    raise DataError(f, f"images[{n}] (id {image_id}): {exc}") from None
                problem = f"{rel(f, root)}: image id {image_id}: {exc}"
        file = image_dir / file_name
        by_id[image_id] = rel(file, root)  # a duplicate id is the gate's images.unique_id
        images.append(
            ImageRef(
                file=file,
                path=by_id[image_id],
                split=split,
                source_id=str(image_id),
                declared_width=size[0],
                declared_height=size[1],
                annotation_error=problem,
            )
        )
    for n, ann in enumerate(data.get("annotations", [])):
        try:
            boxes.append(_box(f, root, n, ann, by_id, categories, index, split))
        except DataError as exc:
            if strict:
                raise
            boxes.append(_bad_box(f, root, ann, by_id, split, exc))
    return images, boxes


def _box(f, root, n, ann, by_id, categories, index, split) -> dict:
    ann_id = ann.get("id") if isinstance(ann, dict) else None
    try:
        _, image_id, category_id = _entry(ann, ("id", "int"), ("image_id", "int"), ("category_id", "int"))
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise _Wrong(f"bbox is {shown(bbox) if 'bbox' in ann else 'missing'}, expected [x, y, width, height] "
                         "as four finite numbers")
        iscrowd = _field(ann, "iscrowd", "flag", required=False) or 0
    except _Wrong as exc:
        where = f"annotation {shown(ann_id)}" if ann_id is not None else f"annotations[{n}]"
        raise DataError(f, f"{where}: {exc}") from None
    x, y, w, h = (float(v) for v in bbox)
    return {
        "path": by_id.get(image_id),  # null: refers to an image the file does not list
        "split": split,
        "class_index": index.get(category_id),
        "class_name": categories.get(category_id),
        "x_min": x,
        "y_min": y,
        "x_max": x + w,
        "y_max": y + h,
        "iscrowd": bool(iscrowd),
        "difficult": False,
        "truncated": False,
        "annotation": rel(f, root),
        "source_id": str(ann_id),
        "source_class": str(category_id),
        "source_image": str(image_id),
        "error": None,
    }


def _bad_box(f: Path, root: Path, ann, by_id: dict[int, str], split: str, exc: DataError) -> dict:
    ann = ann if isinstance(ann, dict) else {}
    image_id = ann.get("image_id")
    path = by_id.get(image_id) if _is_int(image_id) else None
    nan = float("nan")
    return {
        "path": path, "split": split, "class_index": None, "class_name": None,
        "x_min": nan, "y_min": nan, "x_max": nan, "y_max": nan,
        "iscrowd": False, "difficult": False, "truncated": False,
        "annotation": rel(f, root), "source_id": None if ann.get("id") is None else shown(ann.get("id")),
        "source_class": shown(ann.get("category_id")), "source_image": shown(image_id),
        "error": exc.message,
    }


def _read(root: Path, options: ReadOptions) -> ReadResult:
    return read(root, options.strict)


SOURCE = Source(name="coco", task="detection", reader=_read, sample="cvpipe.sources.samples.coco:generate",
                sample_stream=0, standalone=read_standalone, converters=("yolo", "tfrecord"), options=("cls91to80",))
