"""Writing a converted dataset: staged beside the target, renamed into place when complete."""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cvpipe.classmap import ClassMap
from cvpipe.io import replace_dir, write_text


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """A fresh folder beside ``target`` that replaces it only if the block completes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
        staging = Path(tmp) / target.name
        staging.mkdir()
        yield staging
        replace_dir(staging, target)


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


def write_class_files(classes: ClassMap, out: Path) -> None:
    """``classes.json`` and, where the source has its own ids, ``class_mapping.csv`` (source id -> index)."""
    classes.save(out / "classes.json")
    if any(c.source_id is not None for c in classes.classes):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["source_id", "index", "name"])
        writer.writerows((c.source_id, c.index, c.name) for c in classes.classes)
        write_text(out / "class_mapping.csv", buffer.getvalue())
