"""Detection speed, measured in one run on the same data and settings as ultralytics' own CLI.

    python bench/detect.py [--epochs 5] [--dataset coco] [--model-dir models/coco]

1. Training: ``python -m stages.train`` (the pipeline's train stage: the data digest, the training
   mirror, ultralytics' trainer, the published model) against ``yolo detect train`` on the same
   training mirror with the same arguments, both as fresh processes. Images per second = training
   images x epochs / wall time. ultralytics' CLI computes with ``cpu_count - 1`` torch threads; the
   stage pins ``train.cpu_threads``. The stage is timed with the CLI's thread count (the comparison:
   goal >= 0.95x, the pipeline costs nothing) and with the pipeline's default of 2.
2. Evaluation: ``python -m stages.evaluate`` (predictions, our COCO-style AP, pycocotools on the same
   predictions, confusion matrix, curves, gallery) against ``yolo detect val`` on the held-out split
   with the same model, both as fresh processes. ``--model-dir`` evaluates that trained model (the pipeline's
   ``models/<dataset>``) and skips part 1.

Works on the converted sample (``data/yolo/<dataset>``, run ``make run`` first), copied to a temporary
folder: ultralytics writes label caches beside the labels.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(cmd: list[str], cwd: Path, env: dict | None = None) -> float:
    start = time.perf_counter()
    # the CLI's settings and fonts in a folder of the benchmark's own, not the user's ~/.config/Ultralytics
    config = {"YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(Path(tempfile.gettempdir()) / "cvpipe-bench-ultralytics")}
    done = subprocess.run(cmd, cwd=cwd, env={**os.environ, **config, **(env or {})}, capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def params_file(base: Path, dataset: str, epochs: int, threads: int) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["detection"]["datasets"][dataset]["epochs"] = epochs
    params["detection"]["datasets"][dataset]["patience"] = epochs
    params["train"]["cpu_threads"] = threads
    params["train"]["cache_dir"] = str(base / "cache")
    path = base / f"params-{threads}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--dataset", default="coco")
    parser.add_argument("--model-dir", type=Path, help="evaluate this trained model only (e.g. models/coco), no training")
    args = parser.parse_args()
    source = REPO / "data" / "yolo" / args.dataset
    if not (source / "data.yaml").is_file():
        sys.exit(f"{source}/data.yaml not found: run `make run` first")
    cli_threads = min(8, max(1, (os.cpu_count() or 1) - 1))  # what ultralytics' select_device sets
    with tempfile.TemporaryDirectory(prefix="cvpipe-bench-detect-") as tmp:
        base = Path(tmp)
        data = base / "yolo"
        shutil.copytree(source, data)
        doc = yaml.safe_load((data / "data.yaml").read_text())
        (data / "data.yaml").write_text(yaml.safe_dump(doc | {"path": str(data)}, sort_keys=False))  # the CLI reads it as is
        section = yaml.safe_load((REPO / "params.yaml").read_text())["detection"]["datasets"][args.dataset]

        from cvpipe.detection.data import YoloSet, training_mirror
        from cvpipe.detection.fit import DetectionConfig

        config = DetectionConfig.from_params(section)
        mirror = base / "mirror"
        counts = training_mirror(YoloSet.read(data), mirror, config.val_fraction)
        images = counts["train"] * args.epochs
        print(f"{args.dataset}: {counts['train']} training images x {args.epochs} epochs at {config.imgsz} px, "
              f"{counts['val']} validation images; ultralytics' CLI uses {cli_threads} torch thread(s)")

        model = args.model_dir.resolve() if args.model_dir else train(args, base, data, mirror, config, images, cli_threads)
        evaluation(args, base, data, model, config, cli_threads)


def train(args: argparse.Namespace, base: Path, data: Path, mirror: Path, config, images: int, cli_threads: int) -> Path:
    """Part 1: the train stage against ``yolo detect train``; the stage's model trained with the CLI's threads."""
    ours = {}
    for threads in sorted({cli_threads, 2}):
        params = params_file(base, args.dataset, args.epochs, threads)
        ours[threads] = run([str(BIN / "python"), "-m", "stages.train", "--dataset", args.dataset, "--data-dir", str(data),
                             "--out", str(base / f"model-{threads}"), "--params", str(params)], REPO)
    cli_args = [f"{k}={v}" for k, v in config.ultralytics_args().items() if k not in ("epochs", "patience")]
    theirs = run([str(BIN / "yolo"), "detect", "train", f"data={mirror / 'data.yaml'}", f"model={config.model}",
                  f"epochs={args.epochs}", f"patience={args.epochs}", "device=cpu", "workers=0", "plots=False", "amp=False",
                  "deterministic=True", f"project={base / 'runs'}", "name=cli", "exist_ok=True", *cli_args], base)
    print(f"train  yolo detect train      {images / theirs:7.1f} images/s  ({theirs:.0f} s)")
    for threads, seconds in ours.items():
        note = "same threads as the CLI" if threads == cli_threads else "the pipeline's train.cpu_threads"
        print(f"train  python -m stages.train {images / seconds:7.1f} images/s  ({seconds:.0f} s, {threads} thread(s), "
              f"{note}): {theirs / seconds:.2f}x the CLI")
    return base / f"model-{cli_threads}"


def evaluation(args: argparse.Namespace, base: Path, data: Path, model: Path, config, cli_threads: int) -> None:
    """Part 2: the evaluate stage against ``yolo detect val`` on the held-out split, the same model."""
    from cvpipe.detection.data import YoloSet

    held_out = len(YoloSet.read(data).images["val"])
    evaluate = run([str(BIN / "python"), "-m", "stages.evaluate", "--dataset", args.dataset, "--model-dir", str(model),
                    "--data-dir", str(data), "--out", str(base / "eval"),
                    "--params", str(params_file(base, args.dataset, args.epochs, cli_threads))], REPO)
    val = run([str(BIN / "yolo"), "detect", "val", f"data={data / 'data.yaml'}", f"model={model / 'model.pt'}",
               f"imgsz={config.imgsz}", "device=cpu", "plots=False", f"project={base / 'runs'}", "name=val", "exist_ok=True"], base)
    metrics = json.loads((base / "eval" / "metrics.json").read_text())
    print(f"eval   yolo detect val        {held_out / val:7.1f} images/s  ({val:.1f} s)")
    print(f"eval   python -m stages.evaluate {held_out / evaluate:7.1f} images/s  ({evaluate:.1f} s; mAP50-95 {metrics['map50_95']}, "
          f"pycocotools {metrics['coco']['map50_95']}): {val / evaluate:.2f}x ultralytics' val")


if __name__ == "__main__":
    main()
