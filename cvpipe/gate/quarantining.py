"""What ``on_fail: quarantine`` sets aside for the blocking failures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cvpipe.gate.config import SPLIT_ORDER, CheckResult


@dataclass
class Quarantine:
    """What ``on_fail: quarantine`` removes: images (by path) and box rows, each with its reason."""

    images: set[str] = field(default_factory=set)
    box_rows: set[tuple[str, str | None]] = field(default_factory=set)  # (annotation, source_id) of boxes without an image
    rows: list[dict] = field(default_factory=list)  # quarantine.csv: file, image, expectation, reason
    unfixable: list[CheckResult] = field(default_factory=list)  # failures that removing rows cannot fix


def quarantine(results: list[CheckResult]) -> Quarantine:
    """Decide which images to set aside for the blocking failures; nothing on disk is touched.

    A duplicate keeps its first copy; an image shared between splits stays in the earliest split
    (train before val before test), so evaluation never sees a training image. An image whose boxes
    or masks fail loses them all: a half-annotated image would teach wrong negatives.
    """
    q = Quarantine()
    for r in results:
        if r.passed or not r.blocking:
            continue
        if r.table in ("classes", "splits"):
            q.unfixable.append(r)
            continue
        rows = r.rows
        if r.check == "images.unique_stem":  # keep the first of each name
            rows = _repeats(r.rows, lambda row: row["stem_key"])
        elif r.check == "images.unique_in_split":
            rows = _repeats(r.rows, lambda row: (row["split"], row["sha256"]))
        elif r.check == "images.no_leakage":
            split_of = {row["path"]: row["split"] for row in r.rows}
            rank = lambda split: SPLIT_ORDER.get(split, 3)  # noqa: E731
            rows = [row for row in r.rows if rank(row["split"]) > rank(split_of.get(row["leak_with"], "train"))]
        for row in rows:
            image = row.get("path")
            if image:
                q.images.add(image)
            elif r.table == "boxes":
                q.box_rows.add((row["annotation"], row["source_id"]))
            if r.table == "boxes":
                file = row["annotation"]
            elif r.table == "masks":
                file = row["mask_path"]
            else:
                file = image
            q.rows.append({"file": file, "image": image or "", "expectation": r.check, "reason": row["_reason"]})
    return q


def _repeats(rows: list[dict], key: Callable[[dict], object]) -> list[dict]:
    """The rows whose key an earlier row already had: all copies but the first."""
    seen: set = set()
    out = []
    for row in rows:
        k = key(row)
        if k in seen:
            out.append(row)
        seen.add(k)
    return out
