"""Validation throughput and incremental cost, measured in one run on the same files.

    python bench/validate.py [--images N]

1. Images per second of stages.validate (full decodes on all cores, every Great Expectations
   check, Data Docs) against a plain single-process loop that fully decodes each file with PIL;
   also its decode phase alone. Great Expectations is imported and warmed up on a small set first:
   its import and template compilation are a fixed cost of a few seconds per process.
2. The cost of validating again after adding 1% new images (only those are decoded; the cache
   holds the rest), as a fraction of the first validation.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchtools import timed

from cvpipe.data.decode import decode_all
from stages import ingest, validate
from stages.validate import GateConfig


def write_images(root: Path, start: int, count: int) -> None:
    rng = np.random.default_rng(start)
    base = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    for k in range(start, start + count):
        folder = root / ("Training" if k % 5 else "Test") / f"Class {k % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.roll(base, k % 640, axis=1)
        pixels[:16, :16] = k % 256  # a stamp that survives JPEG: every file's bytes differ
        pixels[16:32, :16] = k // 256
        Image.fromarray(pixels).save(folder / f"r_{k}_100.jpg", quality=90)


def plain_decode_loop(root: Path) -> int:
    n = 0
    for f in sorted(root.rglob("*.jpg")):
        with Image.open(f) as im:
            im.load()
        n += 1
    return n



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    cfg = GateConfig(task="classification", source="fruits360", min_images_per_class=1)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        root, cache = tmp / "data", tmp / "decode.sqlite"
        write_images(tmp / "warm", 0, 20)
        ingest.run("fruits360", tmp / "warm", tmp / "wm")
        validate.run(tmp / "wm", cfg, tmp / "wr")  # import and warm up Great Expectations
        write_images(root, 0, args.images)
        plain_decode_loop(root)  # warm the page cache so both sides read from memory
        baseline_s, n = timed(lambda: plain_decode_loop(root))
        files = {str(i): f for i, f in enumerate(sorted(root.rglob("*.jpg")))}
        decode_s, _ = timed(lambda: decode_all(files, None))

        ingest.run("fruits360", root, tmp / "m")
        first_s, (first, _) = timed(lambda: validate.run(tmp / "m", cfg, tmp / "r", cache=cache))
        write_images(root, args.images, max(1, args.images // 100))
        ingest.run("fruits360", root, tmp / "m")
        second_s, (second, _) = timed(lambda: validate.run(tmp / "m", cfg, tmp / "r", cache=cache))

    print(f"{n} images of 640x480, {os.cpu_count()} cores")
    print(f"plain PIL full-decode loop, 1 process   {n / baseline_s:8.0f} images/s   x1.00")
    print(f"decode phase alone, threads             {n / decode_s:8.0f} images/s   x{baseline_s / decode_s:.2f}")
    print(f"stages.validate, empty cache            {n / first_s:8.0f} images/s   x{baseline_s / first_s:.2f}"
          f"   ({first.decoded} decoded)")
    print(f"again after adding 1% new images        {second_s:8.2f} s = {second_s / first_s:.1%} of the first"
          f"   ({second.decoded} decoded, {second.decode_cache_hits} from cache)")


if __name__ == "__main__":
    main()
