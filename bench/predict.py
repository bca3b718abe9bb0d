"""Batch prediction speed, measured in one run against the one-image-at-a-time paths on the same files.

    python bench/predict.py [--copies 8] [--batch-size 16]

Uses the champions of the project's registry (``make run`` first; ``MLFLOW_TRACKING_URI`` honoured), each
loaded once before timing; images per second over the same files (the sample's held-out images,
replicated by hard links):

1. ``fruits360-classifier``: ``python -m stages.predict``'s run (batched forward passes, every file
   written: predictions.csv, annotated PNGs, the contact sheet) against the registered pyfunc called
   with one image per ``predict`` (the way a loop over ``mlflow.pyfunc`` or the HTTP server goes).
   Goal: >= 3x on the CPU.
2. ``coco-detector``: the stage's run against ultralytics' own ``YOLO(model.pt).predict(file)`` per file
   at the same size and thresholds, nothing written. Goal: >= 1x.

The stage's time includes loading the model from the registry (once per run, a second or two); the
baselines' models are loaded before their clocks start.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchtools import timed

REPO = Path(__file__).resolve().parents[1]


def replicate(files: list[Path], dest: Path, copies: int) -> Path:
    dest.mkdir(parents=True)
    for r in range(copies):
        for k, f in enumerate(files):
            os.link(f, dest / f"r{r:02d}_{k:04d}{f.suffix}")
    return dest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    os.chdir(REPO)
    import mlflow
    from mlflow import MlflowClient

    from cvpipe.data.model_input import images_frame
    from cvpipe.detection.pyfunc import DEFAULTS
    from cvpipe.detection.ultra import load
    from cvpipe.mlops.registry import find_registered, open_store
    from stages import predict

    store = open_store(write=False)
    client = MlflowClient()
    with tempfile.TemporaryDirectory(prefix="cvpipe-bench-predict-") as tmp:
        root = Path(tmp)
        fruits = replicate(sorted(Path("data/raw/fruits360/Test").rglob("*.jpg")), root / "fruits", args.copies)
        files = sorted(fruits.iterdir())
        pyfunc = find_registered(client, store, "fruits360-classifier").load()
        served = mlflow.pyfunc.load_model("models:/fruits360-classifier@champion")
        served.predict(images_frame(files[:2]))  # warm
        one_s, _ = timed(lambda: [served.predict(images_frame([f])) for f in files])
        batch_s, _ = timed(lambda: predict.run("fruits360-classifier", str(fruits), root / "out1", args.batch_size))
        print(f"classifier, {len(files)} images: one at a time {len(files) / one_s:7.1f} img/s | stage batched "
              f"{len(files) / batch_s:7.1f} img/s | ratio {one_s / batch_s:.2f}x (goal >= 3x)")
        del pyfunc

        load()
        from ultralytics import YOLO

        shapes = replicate(sorted(Path("data/raw/coco/val2017").glob("*.jpg")), root / "coco", max(1, args.copies // 4))
        files = sorted(shapes.iterdir())
        detector = find_registered(client, store, "coco-detector").load()
        model = YOLO(str(detector.model.ckpt_path), task="detect")
        settings = {"imgsz": detector.imgsz, "conf": DEFAULTS["conf"], "iou": DEFAULTS["iou"], "max_det": DEFAULTS["max_det"],
                    "device": "cpu", "verbose": False}
        model.predict(str(files[0]), **settings)  # warm
        ultra_s, _ = timed(lambda: [model.predict(str(f), **settings) for f in files])
        stage_s, _ = timed(lambda: predict.run("coco-detector", str(shapes), root / "out2", args.batch_size))
        print(f"detector, {len(files)} images: ultralytics predict {len(files) / ultra_s:7.1f} img/s | stage "
              f"{len(files) / stage_s:7.1f} img/s | ratio {ultra_s / stage_s:.2f}x (goal >= 1x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
