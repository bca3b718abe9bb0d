"""The Simpsons Characters (Kaggle): ``simpsons_dataset/<character>/``, a flat test set, boxes."""

from __future__ import annotations

import csv
from pathlib import Path

from cvpipe.core.errors import DataError
from cvpipe.data.classmap import ClassMap
from cvpipe.data.files import list_images, rel, require_dir
from cvpipe.data.manifest import ImageRef, ReadResult
from cvpipe.sources import ReadOptions, Source

TRAIN_DIR = "simpsons_dataset"
TEST_DIR = "kaggle_simpson_testset"
ANNOTATIONS = "annotation.txt"


def _unnest(folder: Path) -> Path:
    """The Kaggle zip nests ``simpsons_dataset/simpsons_dataset``: use the inner one when so."""
    inner = folder / folder.name
    return inner if inner.is_dir() else folder


def test_label(file: Path) -> str:
    """``homer_simpson_12.jpg`` -> ``homer_simpson``."""
    return file.stem.rsplit("_", 1)[0]


def read(root: Path, strict: bool = True) -> ReadResult:
    """Character folders are the classes; test labels come from file names.

    ``strict=False`` records a malformed ``annotation.txt`` row (its ``error``) instead of stopping.
    """
    train_dir = _unnest(require_dir(root / TRAIN_DIR, "Simpsons training folder"))
    class_dirs = sorted(d for d in train_dir.iterdir() if d.is_dir())
    classes = ClassMap.from_names(d.name for d in class_dirs)
    images = [
        ImageRef(file=f, path=rel(f, root), split="train", label=d.name)
        for d in class_dirs
        for f in list_images(d)
    ]
    test_dir = root / TEST_DIR
    if test_dir.is_dir():
        test_dir = _unnest(test_dir)
        images += [
            ImageRef(file=f, path=rel(f, root), split="test", label=test_label(f))
            for f in list_images(test_dir)
        ]
    boxes = read_annotations(root / ANNOTATIONS, train_dir, root, classes, strict)
    splits = [("train", rel(train_dir, root))] + ([("test", rel(test_dir, root))] if test_dir.is_dir() else [])
    return ReadResult(task="classification", classes=classes, images=images, boxes=boxes, splits=splits)


def read_annotations(path: Path, train_dir: Path, root: Path, classes: ClassMap, strict: bool = True) -> list[dict]:
    """Rows ``./characters/<c>/pic_0000.jpg,x1,y1,x2,y2,<c>``; corners kept as written."""
    if not path.is_file():
        return []
    boxes = []
    with open(path, encoding="utf-8", newline="") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip():
                continue
            try:
                boxes.append(_row(path, line_no, row, train_dir, root, classes))
            except DataError as exc:
                if strict:
                    raise
                boxes.append(_bad_row(path, line_no, row, train_dir, root, exc))
    return boxes


def _image_path(path: Path, line_no: int, image: str, train_dir: Path, root: Path) -> str:
    parts = Path(image).parts
    if len(parts) < 2:
        raise DataError(path, f"image path {image!r} has no character folder", line_no)
    return rel(train_dir / parts[-2] / parts[-1], root)


def _row(path: Path, line_no: int, row: list[str], train_dir: Path, root: Path, classes: ClassMap) -> dict:
    if len(row) != 6:
        raise DataError(path, f"expected 6 comma-separated fields, got {len(row)}", line_no)
    image, *corners, name = (c.strip() for c in row)
    try:
        x1, y1, x2, y2 = (float(c) for c in corners)
    except ValueError:
        raise DataError(path, f"non-numeric box corners {corners}", line_no) from None
    known = name in classes.names
    return {
        "path": _image_path(path, line_no, image, train_dir, root),
        "split": "train",
        "class_index": classes.index_of(name) if known else None,
        "class_name": name if known else None,
        "x_min": x1,
        "y_min": y1,
        "x_max": x2,
        "y_max": y2,
        "iscrowd": False,
        "difficult": False,
        "truncated": False,
        "annotation": f"{rel(path, root)}:{line_no}",
        "source_id": str(line_no),
        "source_class": name,
        "source_image": image,
        "error": None,
    }


def _bad_row(path: Path, line_no: int, row: list[str], train_dir: Path, root: Path, exc: DataError) -> dict:
    try:
        image_path = _image_path(path, line_no, row[0].strip(), train_dir, root)
    except DataError:
        image_path = None
    nan = float("nan")
    return {
        "path": image_path, "split": "train", "class_index": None, "class_name": None,
        "x_min": nan, "y_min": nan, "x_max": nan, "y_max": nan,
        "iscrowd": False, "difficult": False, "truncated": False,
        "annotation": f"{rel(path, root)}:{line_no}", "source_id": str(line_no),
        "source_class": row[-1].strip() if row else None, "source_image": row[0].strip() if row else None,
        "error": exc.message,
    }


def _read(root: Path, options: ReadOptions) -> ReadResult:
    return read(root, options.strict)


def read_standalone(annotations: Path, images: Path, options: ReadOptions) -> ReadResult:
    """``annotation.txt`` and the ``simpsons_dataset`` folder, as ``stages.convert`` takes them without a
    manifest (strict): annotated images first, in the file's order, then the others."""
    require_dir(images, "Simpsons image folder")
    class_dirs = sorted(d for d in images.iterdir() if d.is_dir())
    classes = ClassMap.load(options.classes_file) if options.classes_file else ClassMap.from_names(d.name for d in class_dirs)
    if not annotations.is_file():
        raise DataError(annotations, "annotation file not found")
    boxes = read_annotations(annotations, images, images, classes, strict=True)
    for b in boxes:
        b["annotation"] = f"{annotations.name}:{b['source_id']}"
    first = {path: n for n, path in enumerate(dict.fromkeys(b["path"] for b in boxes))}
    refs = [ImageRef(file=f, path=rel(f, images), split="unsplit") for d in class_dirs for f in list_images(d)]
    refs.sort(key=lambda r: first.get(r.path, len(first)))
    return ReadResult(task="classification", classes=classes, images=refs, boxes=boxes, splits=[("unsplit", ".")])


# the boxes of annotation.txt make a detection set of the annotated images only
SOURCE = Source(name="simpsons", task="classification", reader=_read, sample="cvpipe.sources.samples.simpsons:generate",
                sample_stream=2, standalone=read_standalone, converters=("yolo",), unannotated="no_boxes")
