"""Writing a converted dataset: staged beside the target, renamed into place when complete."""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

from cvpipe.core.io import read_file, write_bytes, write_text
from cvpipe.data.classmap import ClassMap
from cvpipe.data.exif import needs_upright, upright_tag

_HEAD = 8192  # the segments before a JPEG's image data, or its first Exif segment's IFD0, nearly always


def link_or_copy(src: Path, dst: str | Path) -> str:
    """Hard link, else symbolic link, else copy; returns which was made."""
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError:
        pass
    try:
        os.symlink(Path(src).resolve(), dst)
        return "symlink"
    except OSError:
        shutil.copy2(src, dst)
        return "copy"


def place_image(src: Path, dst: str | Path) -> str:
    """``link_or_copy``, except for a JPEG whose EXIF orientation is not 1: that is written as a copy with
    the tag set to 1 (``cvpipe.data.exif``), so that readers which rotate by it, as ultralytics' loader does,
    see the stored pixels the boxes refer to. Returns which was made; ``orientation_reset`` for that copy."""
    fd = os.open(src, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        head = os.read(fd, _HEAD)  # enough to decide for most files; the rest is read only if it may change
    finally:
        os.close(fd)
    if needs_upright(head):
        data = read_file(src)
        upright = upright_tag(data)
        if upright is not data:
            write_bytes(dst, upright)
            return "orientation_reset"
    return link_or_copy(src, dst)


def write_class_files(classes: ClassMap, out: Path) -> None:
    """``classes.json`` and, where the source has its own ids, ``class_mapping.csv`` (source id -> index)."""
    classes.save(out / "classes.json")
    if any(c.source_id is not None for c in classes.classes):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["source_id", "index", "name"])
        writer.writerows((c.source_id, c.index, c.name) for c in classes.classes)
        write_text(out / "class_mapping.csv", buffer.getvalue())
