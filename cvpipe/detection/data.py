"""Reading YOLO label files back (no dependency on the converters, so evaluation imports little)."""

from __future__ import annotations

from pathlib import Path


def read_labels(path: Path, width: int, height: int) -> list[tuple[int, float, float, float, float]]:
    """YOLO label file -> (class, x_min, y_min, x_max, y_max) in pixels; the inverse of label_text."""
    out = []
    for line in path.read_text().splitlines():
        c, cx, cy, w, h = line.split()
        cx, cy, w, h = float(cx) * width, float(cy) * height, float(w) * width, float(h) * height
        out.append((int(c), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    return out
