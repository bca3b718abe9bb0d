"""Atomic writes: an interrupted stage never leaves a half-written file that looks complete."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.

    The temporary name is fixed (``.<name>.tmp``): what a killed writer left there is replaced by the
    next write of the same file instead of piling up. It is created new (never through a link left
    there) with the mode any new file gets under the umask.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = target.with_name(f".{target.name}.tmp")
    tmp_path.unlink(missing_ok=True)
    os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """A fresh folder beside ``target`` that replaces it, as one unit, only if the block completes:
    a kill at any moment leaves the old complete folder or the new one, never a mix of the two (and
    the next run of the same output clears what the killed one left in ``.<name>.staging``)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    room = _fresh(target.with_name(f".{target.name}.staging"))
    room.mkdir()
    try:
        staging = room / target.name
        staging.mkdir()
        yield staging
        replace_dir(staging, target)
    finally:
        shutil.rmtree(room, ignore_errors=True)


def remove_dir(target: Path) -> None:
    """Remove a folder so that no half-deleted copy is ever visible under its name."""
    if target.exists():
        aside = _fresh(target.with_name(f".{target.name}.removed"))
        os.replace(target, aside)
        shutil.rmtree(aside)


def _fresh(path: Path) -> Path:
    """``path``, after removing what an earlier, killed run left there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    return path


_RENAME_EXCHANGE = 2  # renameat2(2): swap two paths atomically (Linux 3.15+)


def replace_dir(staging: Path, target: Path) -> None:
    """Put the complete folder ``staging`` at ``target``. On Linux the two are swapped in one atomic
    renameat2 call, so a kill at any moment leaves either the old complete folder or the new one;
    elsewhere the old one is moved aside first and removed only after the new one is in place."""
    if not target.exists():
        os.replace(staging, target)
        return
    if not _exchange(staging, target):
        aside = _fresh(target.with_name(f".{target.name}.old"))
        os.replace(target, aside)
        os.replace(staging, target)
        staging = aside
    shutil.rmtree(staging)  # after the swap: the old folder


def _exchange(a: Path, b: Path) -> bool:
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0
    return done  # False (EINVAL, ENOSYS: a file system without exchange) falls back to two renames


def write_bytes(target: str | Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``target`` atomically."""
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (never the whole file in memory)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_file(path: str | Path) -> bytes:
    """A whole file's bytes, through the file descriptor: ``open().read()`` adds a buffered layer
    and system calls of its own, which is most of the cost for the small files read by the thousand."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        parts = [os.read(fd, os.fstat(fd).st_size + 1)]
        while parts[-1]:  # until end of file, also if the file grew or a read came back short
            parts.append(os.read(fd, 1 << 20))
        return parts[0] if len(parts) == 2 else b"".join(parts)
    finally:
        os.close(fd)
