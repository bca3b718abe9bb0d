"""Errors that name the file (and where possible the line) that was wrong."""

from __future__ import annotations

from pathlib import Path


class DataError(Exception):
    """Bad or unreadable input data: names the offending path and what is wrong with it."""

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.message = message
        self.line = line
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {message}")
