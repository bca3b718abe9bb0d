"""How cost grows: per-image cost of each data stage on the samples, projected to the full datasets.

    python bench/scale.py [--workers 8 32] [--raw data/raw]
    python bench/scale.py --sizes sample,0.1,real --data /work/scale-data [--dataset NAME ...] [--train-sizes sample,0.1] [--dvc]

``--sizes``: measured, not projected (cvpipe/sources/samples/scale.py): sets of each size (``sample``, a factor
of the real size, ``real``) are generated under ``--data/<size>`` where missing, and each stage runs there as
dvc.yaml runs it (``python -m stages.<name>`` with params.yaml's values, its Dask section included), in a
fresh process: ingest, validate, convert (COCO -> YOLO and TFRecord, DSB RLE -> mask PNGs) and ONE training
epoch of each task (params.yaml's model, image size and batch; ``epochs: 1``), with a plain PIL open + decode
loop over the same files as the baseline, in the same run. Per stage: seconds, images/s, peak RSS (the
stage's process, its VmHWM, and the process tree's sum, sampled every 50 ms: Dask's workers are
children of the stage), the ratio to the decode loop and the growth exponent between sizes. ``--dvc``: a
no-op ``dvc repro`` timed on a throw-away git + DVC project whose data/raw holds the largest Fruits-360 set.

Runs the project's own code, one thread (workers=1), on the embedded samples in data/raw (read, never
written; outputs go to a temporary folder): ingest, validate (the per-image part, build_frames, apart
from Great Expectations' fixed cost), convert (COCO -> YOLO and TFRecord, DSB RLE -> mask PNGs) and
the training input (decode + resize for the classifiers and the detector, image + masks for the U-Net).
The baseline, measured in the same run, is a bare PIL open + full decode of the same files.

Projection (printed with the table): cost per image independent of the set's size; linear scaling
with workers (2 = this machine's cores; a cluster's workers see the files on a shared disk); the
samples' images are smaller than the real ones, so the extra cost of a real-size image is measured
here too (sample images enlarged to the real mean pixel count and re-encoded) and added where it
applies: decoding for validate and training input, hashing for ingest and TFRecord; YOLO labels are
size-independent. DSB2018 costs are dominated by masks, so they are scaled by pixels x masks per image.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchtools import timed

from cvpipe.classification.data import decode_resized
from cvpipe.core.params import load_params
from cvpipe.data.manifest import read_manifest_dir
from cvpipe.gate import build_frames
from cvpipe.segmentation.data import load_images, load_set
from stages import convert, ingest, validate
from stages.validate import config_from_params

REPO = Path(__file__).resolve().parents[1]
# name: (source, task, images of the full set, mean pixels of a real image, masks per image, where from)
FULL = {
    "coco": ("coco", "detection", 118_287, 578 * 484, None, "COCO 2017 train, mean 578x484"),
    "fruits360": ("fruits360", "classification", 90_483, 100 * 100, None, "Fruits-360 100x100 release"),
    "dsb2018": ("dsb2018", "segmentation", 670 + 65, 155_000, 29_461 / 670, "DSB2018 stage 1, 670 train + 65 test"),
}


def image_files(root: Path) -> list[Path]:
    return sorted(f for f in root.rglob("*") if f.suffix.lower() in (".jpg", ".jpeg", ".png") and "masks" not in f.parts)


def pil_decode(files: list[Path]) -> None:
    for f in files:
        with Image.open(f) as im:
            im.load()


def sha256_all(files: list[Path]) -> None:
    for f in files:
        with open(f, "rb") as fh:
            hashlib.file_digest(fh, "sha256")


def enlarged(files: list[Path], pixels: int, out: Path) -> list[Path]:
    """The files re-encoded at ``pixels`` pixels each (same aspect, same format)."""
    out.mkdir(parents=True)
    made = []
    for k, f in enumerate(files):
        with Image.open(f) as im:
            scale = (pixels / (im.width * im.height)) ** 0.5
            big = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BILINEAR)
            target = out / f"{k}{f.suffix}"
            big.save(target, quality=90) if f.suffix.lower() in (".jpg", ".jpeg") else big.save(target)
            made.append(target)
    return made


def best(fn, repeats: int) -> float:
    return min(timed(fn)[0] for _ in range(repeats))


def measure(name: str, raw: Path, tmp: Path, params: dict, repeats: int) -> dict:
    """Seconds per image of each stage on the sample, and the extra seconds of a real-size image."""
    source, task, _, pixels, _, _ = FULL[name]
    files = image_files(raw)
    n = len(files)
    out = tmp / name
    costs: dict[str, float] = {"PIL open + decode (baseline)": best(lambda: pil_decode(files), repeats) / n}
    costs["ingest"] = best(lambda: ingest.run(source, raw, out / "manifest", workers=1, on_bad_annotation="record"), repeats) / n
    manifest = read_manifest_dir(out / "manifest")
    cfg = config_from_params(params, name, task, source)
    costs["validate (per image)"] = best(lambda: build_frames(manifest, cfg, None, 1), repeats) / n
    total = best(lambda: validate.run(out / "manifest", cfg, out / "report", out / "validated", workers=1, name=name), 1)
    fixed = max(0.0, total - costs["validate (per image)"] * n)
    if name == "coco":
        costs["convert coco-yolo"] = best(lambda: convert.run("coco-yolo", out / "yolo", manifest_dir=out / "validated"), repeats) / n
        costs["convert coco-tfrecord"] = best(
            lambda: convert.run("coco-tfrecord", out / "tfrecord", manifest_dir=out / "validated", shards=1), repeats) / n
        costs["training input (decode + resize 160)"] = best(lambda: [decode_resized(f, 160) for f in files], repeats) / n
    elif name == "fruits360":
        costs["training input (decode + resize 64)"] = best(lambda: [decode_resized(f, 64) for f in files], repeats) / n
    else:
        labels = raw / "stage1_train_labels.csv"
        costs["convert dsb-masks"] = best(lambda: convert.run("dsb-masks", out / "masks", labels, raw / "stage1_train"), repeats) / n
        data = load_set(out / "validated", 0.2, 0.1)
        costs["training input (image + masks)"] = best(lambda: list(load_images(data, range(len(data.files)), 1)), repeats) / n
    sample = files[:: max(1, n // 40)]
    sample_pixels = sum(Image.open(f).width * Image.open(f).height for f in sample) / len(sample)
    extra_decode = extra_hash = 0.0
    if pixels > 1.1 * sample_pixels:  # Fruits-360's sample is real-size already
        big = enlarged(sample, pixels, out / "enlarged")
        extra_decode = max(0.0, (best(lambda: pil_decode(big), repeats) - best(lambda: pil_decode(sample), repeats)) / len(sample))
        extra_hash = max(0.0, (best(lambda: sha256_all(big), repeats) - best(lambda: sha256_all(sample), repeats)) / len(sample))
    masks = None
    if FULL[name][4] is not None:
        masks = len(list(raw.glob("stage1_train/*/masks/*.png"))) / len(list(raw.glob("stage1_train/*")))
    return {"n": n, "costs": costs, "fixed": fixed, "extra_decode": extra_decode, "extra_hash": extra_hash,
            "sample_pixels": sample_pixels, "sample_masks": masks}


def real_cost(name: str, stage: str, m: dict) -> float:
    """Seconds per real-size image of ``stage``."""
    cost = m["costs"][stage]
    _, _, _, pixels, masks, _ = FULL[name]
    if masks is not None and not stage.startswith("PIL"):  # DSB: per-mask work on every pixel
        return cost * pixels / m["sample_pixels"] * masks / m["sample_masks"]
    if stage.startswith(("validate", "training", "PIL")):
        return cost + m["extra_decode"]
    if stage.startswith(("ingest", "convert coco-tfrecord")):
        return cost + m["extra_hash"]
    return cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 32], help="cluster sizes to project to")
    parser.add_argument("--raw", type=Path, default=REPO / "data" / "raw")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sizes", help="measure at these sizes instead: sample, real or factors of real, comma-separated")
    parser.add_argument("--data", type=Path, default=Path("/tmp/cvpipe-scale"), help="with --sizes: where the sets are (made if missing)")
    parser.add_argument("--dataset", action="append", choices=list(FULL), help="with --sizes: only these (repeatable)")
    parser.add_argument("--train-sizes", help="with --sizes: train one epoch at these sizes only (default: all); the "
                        "others say so in the table")
    parser.add_argument("--dvc", action="store_true", help="with --sizes: time a no-op dvc repro on the largest Fruits-360 set")
    parser.add_argument("--json", type=Path, help="with --sizes: also write the measurements here")
    args = parser.parse_args()
    if args.sizes:
        from scale_real import measure_sizes

        sizes = args.sizes.split(",")
        train = args.train_sizes.split(",") if args.train_sizes is not None else sizes
        measure_sizes(sizes, args.data, args.dataset or list(FULL), train, args.dvc, args.json)
        return
    params = load_params(REPO / "params.yaml")
    cores = 2
    columns = [cores, *args.workers]
    print(f"{os.cpu_count()} cores here; each stage on one thread (workers=1), best of {args.repeats}; "
          f"hours = ms/image (real size) x images / workers (+ validate's fixed cost); training input: one pass")
    for name, (_, _, full_n, pixels, masks, what) in FULL.items():
        with tempfile.TemporaryDirectory() as tmp:
            m = measure(name, args.raw / name, Path(tmp), params, args.repeats)
        base = m["costs"]["PIL open + decode (baseline)"]
        size = f"real images {pixels / m['sample_pixels']:.1f}x the sample's pixels"
        if masks is not None:
            size += f", {masks:.0f} masks per image (sample {m['sample_masks']:.0f})"
        print(f"\n{name}: sample {m['n']} images -> {what}, {full_n:,} images; {size}")
        print(f"  {'stage':38s} {'ms/img':>7s} {'x base':>7s} {'ms/img real':>11s} " + " ".join(f"{f'h @{w}':>8s}" for w in columns))
        for stage, cost in m["costs"].items():
            real = real_cost(name, stage, m)
            fixed = m["fixed"] if stage.startswith("validate") else 0.0
            hours = " ".join(f"{(real * full_n / w + fixed) / 3600:8.3f}" for w in columns)
            print(f"  {stage:38s} {cost * 1e3:7.2f} {cost / base:7.2f} {real * 1e3:11.2f} {hours}")
        print(f"  validate's fixed cost (Great Expectations, once per run): {m['fixed']:.1f} s")


if __name__ == "__main__":
    main()
