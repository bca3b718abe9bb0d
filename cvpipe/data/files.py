"""Image files in folders: which files are images, paths relative to a dataset root, split folder names."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from cvpipe.core.errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})

SPLIT_ALIASES = {
    "training": "train",
    "train": "train",
    "validation": "val",
    "val": "val",
    "valid": "val",
    "test": "test",
    "testing": "test",
}


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name for a stable manifest order."""
    return [Path(p) for p in image_files(folder)]


def image_files(folder: str | Path) -> list[str]:
    """:func:`list_images` as strings, from one directory listing (no ``stat`` a file where the
    file system gives each entry's type)."""
    with os.scandir(folder) as entries:
        named = [(e.name, e.path) for e in entries
                 if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES and e.is_file()]
    return [path for _, path in sorted(named)]


def rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with POSIX separators (``../`` when it lies beside root).

    Called for every file of a dataset, so it works on strings: pathlib's ``relative_to`` and
    ``relpath`` cost tens of microseconds a call, a hundred thousand times over.
    """
    p, r = os.fspath(path), os.fspath(root)
    if p == r:
        return "."
    if p.startswith(r) and p[len(r) : len(r) + 1] == os.sep:
        tail = p[len(r) + 1 :]
    else:
        folder, name = os.path.split(p)
        tail = _relative_folder(folder, r) + name
    return tail if os.sep == "/" else tail.replace(os.sep, "/")


@lru_cache(maxsize=256)
def _relative_folder(folder: str, root: str) -> str:
    """``folder`` relative to ``root``, with a trailing separator unless it is root itself."""
    relative = os.path.relpath(folder or ".", root)
    return "" if relative == "." else relative + os.sep


def split_name(name: str) -> str:
    """Normalise a split folder name: ``Training`` -> train, ``val2017`` -> val."""
    key = name.lower().rstrip("0123456789").rstrip("_-")
    return SPLIT_ALIASES.get(key, key)


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a readable directory, else a DataError that says what was expected."""
    if not path.exists():
        raise DataError(path, f"{what} not found")
    if not path.is_dir():
        raise DataError(path, f"{what} is not a directory")
    try:
        next(path.iterdir(), None)
    except OSError as exc:
        raise DataError(path, f"{what} cannot be read: {exc.strerror}") from exc
    return path
