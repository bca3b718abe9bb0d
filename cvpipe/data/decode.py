"""Full image decodes, cached by content hash so re-validation decodes only new files."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import PIL

from cvpipe.data.manifest import WorkPool, parallel_map
from cvpipe.data.pil import open_image

# A decode's outcome depends on the bytes and on the decoder: a Pillow upgrade invalidates the cache.
DECODER = f"pillow-{PIL.__version__}"
SUFFIX_FORMATS = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".gif": "GIF",
    ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
}


def decode_file(path: Path) -> dict:
    """Decode every pixel of ``path`` (a truncated file fails here, not only a bad header)."""
    try:
        with open_image(path) as im:
            fmt = im.format
            im.load()
            return {"format": fmt, "decoded_mode": im.mode, "decode_error": None}
    except Exception as exc:  # noqa: BLE001 - the failure is the result, reported by the gate
        return {"format": None, "decoded_mode": None, "decode_error": f"{type(exc).__name__}: {exc}"}


@dataclass
class DecodeStats:
    decoded: int = 0
    cached: int = 0


class DecodeCache:
    """SQLite table: (decoder, sha256) -> decode result. A missing path means no caching."""

    def __init__(self, path: Path | None) -> None:
        self.db = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path)
            self.db.execute("CREATE TABLE IF NOT EXISTS decoded (decoder TEXT, sha256 TEXT, result TEXT, PRIMARY KEY (decoder, sha256))")

    def get(self, digests: Iterable[str]) -> dict[str, dict]:
        if self.db is None:
            return {}
        wanted = list(set(digests))
        found: dict[str, dict] = {}
        for i in range(0, len(wanted), 500):
            part = wanted[i : i + 500]
            query = f"SELECT sha256, result FROM decoded WHERE decoder = ? AND sha256 IN ({','.join('?' * len(part))})"
            found.update((d, json.loads(r)) for d, r in self.db.execute(query, [DECODER, *part]))
        return found

    def put(self, results: dict[str, dict]) -> None:
        if self.db is None or not results:
            return
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO decoded VALUES (?, ?, ?)",
                [(DECODER, d, json.dumps(r)) for d, r in results.items()],
            )

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


def decode_all(
    files: dict[str, Path], cache_path: Path | None, workers: int | WorkPool | None = None
) -> tuple[dict[str, dict], DecodeStats]:
    """Decode results for ``sha256 -> file``; only files whose hash the cache lacks are decoded."""
    cache = DecodeCache(cache_path)
    try:
        results = cache.get(files)
        todo = [(d, f) for d, f in files.items() if d not in results]
        fresh = dict(zip((d for d, _ in todo), parallel_map(decode_file, [f for _, f in todo], "decode", workers), strict=True))
        cache.put(fresh)
    finally:
        cache.close()
    results.update(fresh)
    return results, DecodeStats(decoded=len(fresh), cached=len(files) - len(fresh))
