"""Train: a model for one dataset from its validated manifest, with the settings in params.yaml.

    python -m stages.train --dataset fruits360 [--manifest-dir data/validated/fruits360] [--out models/fruits360]

Writes ``OUT/model.pt`` (best weights by validation loss, with the class names and input size),
``OUT/history.csv`` (one row per epoch) and ``OUT/train.json`` (summary and content digests).
Resumable: a checkpoint under the cache folder, keyed by the data, the parameters and the code,
lets an interrupted run continue from its last finished epoch.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from cvpipe.errors import DataError
from cvpipe.io import write_json, write_text
from cvpipe.params import dataset_task, load_params
from cvpipe.training import TrainingError, fingerprint, pick_device

log = logging.getLogger(__name__)
TASKS = ("classification", "detection", "segmentation")
CODE_VERSION = 1  # bump when training code changes results, so stale checkpoints are not resumed


@dataclass(frozen=True)
class TrainResult:
    task: str
    epochs: int
    best_epoch: int
    best_val_loss: float
    val_accuracy: float
    stopped_early: bool
    resumed_from_epoch: int | None
    device: str
    seconds: float
    data_digest: str
    params_digest: str


def run(
    task: str,
    manifest_dir: Path,
    out: Path,
    params: dict,
    device: str = "auto",
    cache_dir: Path | None = Path(".cache/cvpipe"),
    stop_after: int | None = None,
) -> TrainResult:
    """Train the task's model on ``manifest_dir``; ``params`` is the dataset's training section."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {list(TASKS)}")
    if task != "classification":
        raise NotImplementedError(f"training for {task} is not built yet (classification only so far)")
    return _classification(manifest_dir, out, params, device, cache_dir, stop_after)


def _classification(manifest_dir: Path, out: Path, params: dict, device_name: str, cache_dir: Path | None, stop_after: int | None) -> TrainResult:
    from cvpipe.classification.data import load_table, load_tensors
    from cvpipe.classification.fit import TrainConfig, fit
    from cvpipe.classification.models import save_trained

    config = TrainConfig.from_params(params)
    device = pick_device(device_name)
    table = load_table(manifest_dir, config.val_fraction)
    images = load_tensors(table, config.image_size, cache_dir / "tensors" if cache_dir else None)
    data_digest, params_digest = table.digest(), fingerprint(asdict(config))
    key = fingerprint(data_digest, params_digest, CODE_VERSION, device.type)
    checkpoint = cache_dir / "checkpoints" / f"{key}.pt" if cache_dir else None
    log.info("%d train / %d val images, %d classes, %s on %s", len(table.indices("train")), len(table.indices("val")),
             len(table.classes), config.architecture, device)
    result = fit(images, table.labels, table.indices("train"), table.indices("val"), len(table.classes), config, device,
                 checkpoint, key, stop_after)
    out.mkdir(parents=True, exist_ok=True)
    save_trained(out / "model.pt", result.model, config.architecture, table.classes.names, config.image_size)
    table.classes.save(out / "classes.json")
    write_text(out / "history.csv", _csv(result.history))
    best = next((h for h in result.history if h["epoch"] == result.best_epoch), result.history[-1])
    summary = TrainResult(
        task="classification", epochs=len(result.history), best_epoch=result.best_epoch, best_val_loss=round(result.best_val_loss, 6),
        val_accuracy=round(best["val_accuracy"], 6), stopped_early=result.stopped_early, resumed_from_epoch=result.resumed_from,
        device=device.type, seconds=round(result.seconds, 1), data_digest=data_digest, params_digest=params_digest,
    )
    # the file holds only what the inputs decide (no timings), so a rerun writes the same bytes
    stable = {k: v for k, v in asdict(summary).items() if k not in ("seconds", "resumed_from_epoch")}
    write_json(out / "train.json", stable | {"params": asdict(config)})
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)  # finished: the next run with these inputs starts afresh
    return summary


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    return buffer.getvalue()


def dataset_params(params: dict, dataset: str) -> tuple[str, dict]:
    """(task, training section) of a dataset from params.yaml."""
    task = dataset_task(params, dataset)
    section = params.get("train", {}).get("datasets", {}).get(dataset)
    if section is None:
        raise ValueError(f"dataset {dataset!r} has no section under train.datasets in params.yaml")
    return task, section


def settings(params: dict) -> tuple[str, Path | None]:
    """(device, cache folder) from the ``train`` section, shared by train, evaluate and the flow."""
    common = params.get("train", {})
    return common.get("device", "auto"), Path(common["cache_dir"]) if common.get("cache_dir") else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.train", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a dataset listed in params.yaml")
    parser.add_argument("--manifest-dir", type=Path, help="default: data/validated/<dataset>")
    parser.add_argument("--out", type=Path, help="default: models/<dataset>")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--metrics", type=Path, help="write the summary here as JSON (for dvc metrics)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        params = load_params(args.params)
        task, section = dataset_params(params, args.dataset)
        result = run(task, args.manifest_dir or Path("data/validated") / args.dataset, args.out or Path("models") / args.dataset,
                     section, *settings(params))
    except (DataError, ValueError, TrainingError, NotImplementedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.metrics:
        write_json(args.metrics, {k: v for k, v in asdict(result).items() if k in ("epochs", "best_epoch", "best_val_loss", "val_accuracy")})
    log.info("trained %s: best epoch %d of %d, val loss %.4f, val accuracy %.3f (%s, %.0f s)", args.dataset, result.best_epoch,
             result.epochs, result.best_val_loss, result.val_accuracy, result.device, result.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
