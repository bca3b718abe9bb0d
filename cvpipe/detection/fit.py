"""Training a YOLO detector with ultralytics on the training mirror of a converted YOLO folder
(:func:`cvpipe.detection.data.training_mirror`).

ultralytics' run folder (``save_dir``, absolute, so no ``runs/`` and no ``train2``) is under the
cache folder, keyed by the data, the parameters and this code, so an interrupted run resumes from its
``last.pt``. When training ends, ``models/<dataset>`` gets what is reproducible: ``model.pt`` (the best
epoch's weights, :func:`cvpipe.detection.ultra.portable_checkpoint`), ``history.csv``,
``classes.json``, ``train.json``.
"""

from __future__ import annotations

import csv
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvpipe.core.errors import ParamsError, TrainingError
from cvpipe.core.io import remove_dir, write_json, write_text
from cvpipe.core.params import check_keys, choice, mapping, number
from cvpipe.data.splits import check_fraction
from cvpipe.detection.data import YoloSet

log = logging.getLogger(__name__)
CODE_VERSION = 1  # bump when this code changes what training produces, so old run folders are not resumed
OPTIMIZERS = ("SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp")
# ultralytics' augmentation arguments (cfg/default.yaml) that params.yaml may set under `augment`
AUGMENTATIONS = ("hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "perspective", "flipud", "fliplr",
                 "bgr", "mosaic", "mixup", "cutmix", "copy_paste", "close_mosaic")


class Interrupted(KeyboardInterrupt):
    """Raised by ``stop_after``: the run ends as a kill would, after ``last.pt`` is written."""


@dataclass(frozen=True)
class DetectionConfig:
    """``detection.datasets.<dataset>`` in params.yaml."""

    model: str = "yolov8n.yaml"  # a model YAML ultralytics ships (built from scratch) or a local .pt file
    epochs: int = 15
    imgsz: int = 160
    batch: int = 16
    optimizer: str = "AdamW"
    lr0: float = 0.0015
    momentum: float = 0.9
    weight_decay: float = 0.0005
    patience: int = 10
    seed: int = 0
    val_fraction: float = 0.15  # of images/train, picks the best epoch; the converter's val stays held out
    augment: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_params(cls, section: dict) -> DetectionConfig:
        section = dict(mapping(section, ""))
        check_keys(section, cls.__dataclass_fields__)
        model = section.get("model", cls.model)
        if not isinstance(model, str) or not model.endswith((".yaml", ".yml", ".pt")):
            raise ParamsError("model", f"is {model!r}; give a model YAML (yolov8n.yaml, yolo11n.yaml) or a local .pt file")
        if model.endswith(".pt") and not Path(model).is_file():
            raise ParamsError("model", f"{model!r} is not a file here; weights are never downloaded: give a local .pt path")
        for key in ("epochs", "imgsz", "batch", "patience", "seed"):
            if key in section:
                number(section[key], key, integer=True, minimum=0 if key == "seed" else 1)
        if section.get("imgsz", 32) % 32:
            raise ParamsError("imgsz", f"is {section['imgsz']}; it must be a multiple of 32 (YOLO's largest stride)")
        for key in ("lr0", "momentum", "weight_decay"):
            if key in section:
                number(section[key], key, minimum=0)
        choice(section.get("optimizer", cls.optimizer), "optimizer", OPTIMIZERS)
        check_fraction(section.get("val_fraction", cls.val_fraction))
        if not section.get("val_fraction", cls.val_fraction) > 0:
            raise ParamsError("val_fraction", "must be above 0: ultralytics picks the best epoch on it")
        augment = mapping(section.get("augment", {}), "augment")
        check_keys(augment, AUGMENTATIONS, "augment")
        for key, value in augment.items():
            if key == "close_mosaic":
                number(value, "augment.close_mosaic", integer=True, minimum=0)
            else:
                number(value, f"augment.{key}", minimum=0)
        return cls(**section)

    def ultralytics_args(self) -> dict[str, Any]:
        """The arguments of ``YOLO.train`` these parameters set."""
        return {"epochs": self.epochs, "imgsz": self.imgsz, "batch": self.batch, "optimizer": self.optimizer, "lr0": self.lr0,
                "momentum": self.momentum, "weight_decay": self.weight_decay, "patience": self.patience, "seed": self.seed,
                **self.augment}


@dataclass(frozen=True)
class Trained:
    run_dir: Path
    best: Path
    history: list[dict[str, float]]
    best_epoch: int
    epochs: int
    stopped_early: bool
    resumed_from: int | None
    device: str
    seconds: float
    metrics: dict[str, float]


def history_rows(results_csv: Path) -> list[dict[str, float]]:
    """ultralytics' results.csv without its wall-clock column, with names MLflow accepts
    (``metrics/mAP50(B)`` -> ``val/mAP50``)."""
    rows = []
    with open(results_csv, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            clean = {}
            for column, value in row.items():
                if column.strip() == "time":
                    continue
                name = column.strip().replace("(B)", "").replace("metrics/", "val/")
                clean[name] = int(float(value)) if name == "epoch" else round(float(value), 6)
            rows.append(clean)
    return rows


@contextmanager
def amp_decided_by_device(use_amp: bool):
    """AMP on CUDA without ultralytics' check, which downloads yolo26n.pt (checks.py:1040); the choice is
    the device's, as for the classifiers. Restores the check afterwards."""
    import ultralytics.engine.trainer as trainer_module

    original = trainer_module.check_amp
    trainer_module.check_amp = lambda model: use_amp
    try:
        yield
    finally:
        trainer_module.check_amp = original


def fit(config: DetectionConfig, data_yaml: Path, run_dir: Path, device: str, threads: int, stop_after: int | None = None) -> Trained:
    """Train (or resume) in ``run_dir``; ``stop_after`` ends the process after that many epochs of this
    call, once ``last.pt`` is written, as a kill would (for tests)."""
    import torch
    from ultralytics import YOLO

    last = run_dir / "weights" / "last.pt"
    resumed_from = resumable_epoch(last)
    cuda = device.startswith("cuda")
    try:
        model = YOLO(str(last) if resumed_from is not None else config.model)
    except FileNotFoundError as exc:  # a YAML name ultralytics does not ship
        raise ParamsError("model", f"{config.model!r} is neither a model YAML ultralytics ships nor a local file ({exc})") from None
    done = {"epochs": 0}

    def pin_threads(_trainer) -> None:  # ultralytics' select_device sets cpu_count - 1 threads
        torch.set_num_threads(threads)

    def count_epoch(trainer) -> None:
        done["epochs"] += 1
        if stop_after is not None and done["epochs"] >= stop_after and trainer.epoch + 1 < trainer.epochs:
            raise Interrupted(f"stopped after {stop_after} epochs (as asked)")

    model.add_callback("on_pretrain_routine_start", pin_threads)
    model.add_callback("on_train_start", pin_threads)
    model.add_callback("on_model_save", count_epoch)
    start = time.perf_counter()
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        with amp_decided_by_device(cuda):
            if resumed_from is not None:
                log.info("resuming from %s (epoch %d)", last, resumed_from + 1)
                model.train(resume=str(last), workers=0)
            else:
                remove_dir(run_dir)
                model.train(data=str(data_yaml), save_dir=str(run_dir), exist_ok=True,
                            device=device.replace("cuda:", "") if cuda else "cpu", amp=cuda, workers=0, deterministic=True,
                            plots=False, verbose=False, val=True, **config.ultralytics_args())
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=True)  # ultralytics turns it off when training ends
    trainer = model.trainer
    best = run_dir / "weights" / "best.pt"
    if not best.is_file():
        raise TrainingError(f"ultralytics finished without {best}; see its log above")
    history = history_rows(run_dir / "results.csv")
    if hasattr(trainer, "stopper"):
        best_epoch = int(trainer.stopper.best_epoch)  # the stopper counts epochs from 1
        final = {k.replace("(B)", "").replace("metrics/", "val_").replace("-", "_"): round(float(v), 6)
                 for k, v in (trainer.metrics or {}).items() if k.startswith("metrics/")}
    else:  # a device list: ultralytics trained in DDP processes of its own, and this process's trainer never set up
        best_epoch, final = best_of(history)
    return Trained(run_dir, best, history, best_epoch, len(history), len(history) < config.epochs, resumed_from,
                   "cuda" if cuda else "cpu", time.perf_counter() - start, final)


def best_of(history: list[dict[str, float]]) -> tuple[int, dict[str, float]]:
    """(the epoch best.pt comes from, its validation metrics) from the history rows, as ultralytics
    chooses it: the highest fitness (mAP50-95), the later epoch on a tie. The metrics are that epoch's
    validation; a single process validates best.pt once more at the end (half precision: the third
    decimal may differ)."""
    best = max(reversed(history), key=lambda row: row["val/mAP50-95"])
    return int(best["epoch"]), {k.replace("val/", "val_").replace("-", "_"): v for k, v in best.items()
                                if k in ("val/precision", "val/recall", "val/mAP50", "val/mAP50-95")}


def resumable_epoch(last: Path) -> int | None:
    """The epoch an interrupted run's ``last.pt`` ended, or None (no file, or a finished, stripped one)."""
    if not last.is_file():
        return None
    import torch

    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)  # written by our own earlier run
    except Exception as exc:  # noqa: BLE001 - a torn file from a kill mid-write: start afresh, say so
        log.warning("cannot resume from %s (%s); training from the start", last, exc)
        return None
    epoch = ckpt.get("epoch", -1)
    return int(epoch) if epoch is not None and epoch >= 0 and ckpt.get("optimizer") is not None else None


def write_outputs(out: Path, trained: Trained, data: YoloSet, params: dict[str, Any], record: dict[str, Any]) -> None:
    """models/<dataset>: model.pt, history.csv, classes.json, train.json (only what the inputs decide)."""
    from cvpipe.core.plots import csv_text
    from cvpipe.detection.ultra import portable_checkpoint

    out.mkdir(parents=True, exist_ok=True)
    portable_checkpoint(trained.best, out / "model.pt", params)
    write_text(out / "history.csv", csv_text(trained.history))
    data.classes.save(out / "classes.json")
    write_json(out / "train.json", record)


def check_device(requested: str) -> str:
    """``train.device`` for ultralytics: ``cpu``, ``cuda:N``, or a device list ``cuda:0,1`` (checked against the
    machine), with which ultralytics trains with DDP in processes it starts itself and predicts on the first."""
    from cvpipe.tasks.training import device_indices, pick_device

    if device_indices(requested) is not None:
        return requested
    dev = pick_device(requested)
    return "cpu" if dev.type != "cuda" else f"cuda:{dev.index or 0}"

