"""Training a YOLO detector with ultralytics on a converted YOLO folder (``data/yolo/<dataset>``).

The converted folder is a DVC output and stays untouched (ultralytics writes ``labels/*.cache`` beside
the labels it reads): training reads a mirror under the cache folder, with the images linked, the
labels copied, and the training split divided into what it trains on and what picks the best epoch
(``val_fraction``, by a stable hash of the file name). The converter's ``val`` split is held out for
the evaluate stage: the model never sees it.

ultralytics' run folder (``save_dir``, absolute, so no ``runs/`` and no ``train2``) is also under the
cache folder, keyed by the data, the parameters and this code, so an interrupted run resumes from its
``last.pt``. When training ends, ``models/<dataset>`` gets what is reproducible: ``model.pt`` (the best
epoch's weights, :func:`cvpipe.detection.ultra.portable_checkpoint`), ``history.csv``,
``classes.json``, ``train.json``.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cvpipe.core.errors import DataError, ParamsError, TrainingError
from cvpipe.core.io import remove_dir, staged_dir, write_json, write_text
from cvpipe.core.params import check_keys, choice, mapping, number
from cvpipe.data.classmap import ClassMap
from cvpipe.data.splits import check_fraction, unit_hash

log = logging.getLogger(__name__)
CODE_VERSION = 1  # bump when this code changes what training produces, so old run folders are not resumed
OPTIMIZERS = ("SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp")
# ultralytics' augmentation arguments (cfg/default.yaml) that params.yaml may set under `augment`
AUGMENTATIONS = ("hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear", "perspective", "flipud", "fliplr",
                 "bgr", "mosaic", "mixup", "cutmix", "copy_paste", "close_mosaic")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


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
class YoloSet:
    """A converted YOLO folder: its class map (checked against data.yaml), images and label files per split."""

    root: Path
    classes: ClassMap
    images: dict[str, list[Path]]

    @classmethod
    def read(cls, root: Path) -> YoloSet:
        for required in ("data.yaml", "classes.json"):
            if not (root / required).is_file():
                raise DataError(root / required, "not found (run the convert_yolo stage first)")
        classes = ClassMap.load(root / "classes.json")
        try:
            data = yaml.safe_load((root / "data.yaml").read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise DataError(root / "data.yaml", f"malformed YAML: {exc}") from exc
        names = data.get("names") if isinstance(data, dict) else None
        names = list(names.values()) if isinstance(names, dict) else names
        if names != classes.names:
            raise DataError(root / "data.yaml", f"names {names} disagree with classes.json's {classes.names}; convert again")
        images = {}
        for split in ("train", "val", "test"):
            folder = root / "images" / split
            if folder.is_dir():
                images[split] = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return cls(root, classes, images)

    def label_file(self, image: Path) -> Path:
        return self.root / "labels" / image.parent.name / f"{image.stem}.txt"

    def boxes(self, split: str) -> int:
        return sum(len(self.label_file(p).read_text().splitlines()) for p in self.images.get(split, []) if self.label_file(p).is_file())

    def held_out(self, split: str) -> str:
        """The folder evaluated for ``split``: ``test`` is the converter's test split if it has one, else its
        ``val`` (never trained on: training validates on a share of ``train``)."""
        if split == "test" and "test" not in self.images:
            return "val"
        if split not in self.images:
            raise DataError(self.root / "images", f"no {split!r} split; splits: {', '.join(self.images)}")
        return split

    def digest(self) -> str:
        """sha256 over every image's and label's bytes, by split and name: what training reads."""
        h = hashlib.sha256()
        for split, files in sorted(self.images.items()):
            for image in files:
                h.update(f"{split}/{image.name}\0".encode())
                h.update(hashlib.sha256(image.read_bytes()).digest())
                label = self.label_file(image)
                h.update(label.read_bytes() if label.is_file() else b"\0none")
        h.update(repr(self.classes.names).encode())
        return h.hexdigest()[:16]


def training_mirror(data: YoloSet, out: Path, val_fraction: float) -> dict[str, int]:
    """``out``: images linked and labels copied, ``train`` divided into train and val by a stable hash
    of the file name, and a ``data.yaml`` with an absolute path. Returns the images per split."""
    if not data.images.get("train"):
        raise DataError(data.root / "images" / "train", "no training images")
    if data.boxes("train") == 0:
        raise DataError(data.root / "labels" / "train", "not a single box in the training split: nothing to learn")
    counts = {"train": 0, "val": 0}
    with staged_dir(out) as stage:
        for split in counts:
            (stage / "images" / split).mkdir(parents=True)
            (stage / "labels" / split).mkdir(parents=True)
        for image in data.images["train"]:
            # salted: the converter drew its val split with the plain hash, so what it left has no low ones
            split = "val" if unit_hash(f"detection-train-val/{image.name}") < val_fraction else "train"
            counts[split] += 1
            os.symlink(image.resolve(), stage / "images" / split / image.name)
            label = data.label_file(image)
            if label.is_file():
                write_text(stage / "labels" / split / label.name, label.read_text())
        if not counts["val"] or not counts["train"]:
            raise ParamsError("val_fraction", f"{val_fraction} leaves {counts} of the {len(data.images['train'])} training "
                                              "images; both parts need some")
        doc = {"path": str(out.resolve()), "train": "images/train", "val": "images/val", "nc": len(data.classes),
               "names": dict(enumerate(data.classes.names))}
        write_text(stage / "data.yaml", yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return counts


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

