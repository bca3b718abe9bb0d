"""Ingest throughput: the threaded probe against a plain single-threaded loop, in the same run.

    python bench/ingest_probe.py [--images N] [--root DIR]

Without --root it builds N JPEGs of 640x480 (the size of a COCO photo) in a temporary folder, in a
Fruits-360 layout. It prints images per second for the plain loop (sha256 + PIL header, one file
after another) and for stages.ingest with 1 and with all workers, as ratios to the plain loop.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchtools import timed

from stages import ingest


def build(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    for k in range(n):
        folder = root / "Training" / f"Class {k % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.roll(base, k, axis=1)).save(folder / f"r_{k}_100.jpg", quality=90)
    return root


def plain_loop(root: Path) -> int:
    n = 0
    for f in sorted(root.rglob("*.jpg")):
        with open(f, "rb") as fh:
            hashlib.file_digest(fh, "sha256")
        with Image.open(f) as im:
            _ = im.size, im.mode
        n += 1
    return n



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--root", type=Path, help="an existing Fruits-360-layout folder instead")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or build(Path(tmp) / "data", args.images)
        n = plain_loop(root)  # also warms the page cache, so every variant reads from memory
        workers = os.cpu_count() or 1
        variants = {
            "plain loop (sha256 + PIL header)": lambda: plain_loop(root),
            "stages.ingest, 1 worker": lambda: ingest.run("fruits360", root, Path(tmp) / "o1", workers=1),
            f"stages.ingest, {workers} workers": lambda: ingest.run("fruits360", root, Path(tmp) / "o2", workers=workers),
        }
        best = {name: min(timed(fn)[0] for _ in range(args.repeats)) for name, fn in variants.items()}
        baseline = best["plain loop (sha256 + PIL header)"]
        print(f"{n} images, {workers} cores, best of {args.repeats}")
        for name, seconds in best.items():
            print(f"{name:40s} {n / seconds:9.0f} images/s   x{baseline / seconds:.2f}")


if __name__ == "__main__":
    main()
