"""Fruits-360: ``Training/<class>/*.jpg``, ``Test/<class>/*.jpg`` (and ``Validation/``)."""

from __future__ import annotations

from pathlib import Path

from cvpipe.core.errors import DataError
from cvpipe.data.classmap import ClassMap
from cvpipe.data.files import list_images, rel, require_dir, split_name
from cvpipe.data.manifest import ImageRef, ReadResult
from cvpipe.sources import ReadOptions, Source

SPLIT_FOLDERS = ("Training", "Validation", "Test")


def read(root: Path) -> ReadResult:
    """One image per file, labelled by its class folder; every class folder is a class."""
    require_dir(root, "Fruits-360 root")
    split_dirs = [root / s for s in SPLIT_FOLDERS if (root / s).is_dir()]
    if not split_dirs:
        raise DataError(root, f"no split folders; expected some of {list(SPLIT_FOLDERS)}")
    names = sorted({d.name for s in split_dirs for d in s.iterdir() if d.is_dir()})
    classes = ClassMap.from_names(names)
    images = [
        ImageRef(file=f, path=rel(f, root), split=split_name(s.name), label=class_dir.name)
        for s in split_dirs
        for class_dir in sorted(d for d in s.iterdir() if d.is_dir())
        for f in list_images(class_dir)
    ]
    splits = [(split_name(s.name), rel(s, root)) for s in split_dirs]
    return ReadResult(task="classification", classes=classes, images=images, splits=splits)


def _read(root: Path, options: ReadOptions) -> ReadResult:
    return read(root)


SOURCE = Source(name="fruits360", task="classification", reader=_read, sample="cvpipe.sources.samples.fruits360:generate",
                sample_stream=1)
