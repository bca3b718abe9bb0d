"""Evaluate: the trained model on the held-out split; metrics, confusion matrices and pictures.

    python -m stages.evaluate --dataset fruits360 [--model-dir models/fruits360] [--out reports/evaluate/fruits360]

Writes under OUT: ``metrics.json`` (``dvc metrics show/diff``), ``predictions.csv`` (``dvc plots
show`` with the confusion template: x=actual, y=predicted), ``confusion.png`` and ``.csv`` (counts
and row-normalised), ``per_class.csv`` (precision, recall, F1, support; macro and weighted),
``top_confusions.csv`` and ``misclassified.png`` (true and predicted labels with confidence).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from cvpipe.errors import DataError
from cvpipe.io import write_json
from cvpipe.params import dataset_task, load_params
from cvpipe.training import TrainingError, pick_device
from stages.train import settings

log = logging.getLogger(__name__)
GALLERY_MAX = 24


@dataclass(frozen=True)
class EvaluateResult:
    split: str
    images: int
    accuracy: float
    macro_f1: float
    metrics: dict


def run(task: str, model_dir: Path, manifest_dir: Path, out: Path, split: str = "test", device: str = "auto",
        cache_dir: Path | None = Path(".cache/cvpipe"), title: str | None = None) -> EvaluateResult:
    if task != "classification":
        raise NotImplementedError(f"evaluation for {task} is not built yet (classification only so far)")
    import numpy as np
    import pandas as pd

    from cvpipe.classification.data import decode_resized, load_table, load_tensors
    from cvpipe.classification.evaluate import score, write_report
    from cvpipe.classification.fit import predict
    from cvpipe.classification.models import load_trained

    dev = pick_device(device)
    model, meta = load_trained(model_dir / "model.pt", dev)
    trained = json.loads((model_dir / "train.json").read_text(encoding="utf-8")) if (model_dir / "train.json").is_file() else {}
    table = load_table(manifest_dir, trained.get("params", {}).get("val_fraction", 0.2))
    if table.classes.names != meta["classes"]:
        raise DataError(model_dir / "model.pt", f"model classes {meta['classes']} differ from the dataset's {table.classes.names}")
    idx = table.indices(split)
    if not len(idx):
        raise DataError(manifest_dir / "manifest.parquet", f"no images in the {split!r} split to evaluate on")
    images = load_tensors(table, meta["image_size"], cache_dir / "tensors" if cache_dir else None)
    probs = predict(model, images, idx, dev)
    pred, conf = probs.argmax(1), probs.max(1)
    truth = table.labels[idx]
    names = table.classes.names
    scores = score(truth, pred, names)
    predictions = pd.DataFrame({
        "path": [table.paths[i] for i in idx],
        "actual": [names[t] for t in truth],
        "predicted": [names[p] for p in pred],
        "confidence": np.round(conf, 6),
    })
    wrong = np.flatnonzero(pred != truth)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:GALLERY_MAX]  # the most confident mistakes first
    gallery = [(decode_resized(table.files[idx[k]], 96), f"{names[truth[k]]}\n-> {names[pred[k]]} ({conf[k]:.2f})") for k in wrong]
    metrics = write_report(out, scores, predictions, title or manifest_dir.name, gallery)
    metrics["split"] = split
    write_json(out / "metrics.json", metrics)
    return EvaluateResult(split, len(idx), metrics["accuracy"], metrics["macro_f1"], metrics)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model-dir", type=Path, help="default: models/<dataset>")
    parser.add_argument("--manifest-dir", type=Path, help="default: data/validated/<dataset>")
    parser.add_argument("--out", type=Path, help="default: reports/evaluate/<dataset>")
    parser.add_argument("--split", default="test")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        params = load_params(args.params)
        result = run(dataset_task(params, args.dataset), args.model_dir or Path("models") / args.dataset,
                     args.manifest_dir or Path("data/validated") / args.dataset, args.out or Path("reports/evaluate") / args.dataset,
                     args.split, *settings(params), args.dataset)
    except (DataError, ValueError, TrainingError, NotImplementedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    log.info("%s on %s (%d images): accuracy %.3f, macro-F1 %.3f", args.dataset, result.split, result.images, result.accuracy, result.macro_f1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
