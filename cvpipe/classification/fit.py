"""The classification training loop: augment, optimise, checkpoint, stop early, resume.

Keras-style callbacks as plain code: the best weights by validation loss are kept (and restored at
the end), early stopping has a patience, the learning rate drops on a plateau. Every epoch a
checkpoint (model, optimiser, scheduler, scaler, RNG and callback state) is written atomically, so an
interrupted run resumes where it stopped and ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from cvpipe.classification.data import AugmentConfig, BatchAugment, Batches
from cvpipe.classification.models import ARCHITECTURES, build_model
from cvpipe.errors import ParamsError
from cvpipe.params import check_keys, choice, flag, mapping, number
from cvpipe.splits import check_fraction
from cvpipe.training import EarlyStopping, LoopState, check_finite, load_checkpoint, save_checkpoint, seed_everything

log = logging.getLogger(__name__)
OPTIMIZERS = ("sgd", "adam", "rmsprop")


@dataclass(frozen=True)
class TrainConfig:
    architecture: str = "littlevgg"
    image_size: int = 64
    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # SGD and RMSprop
    nesterov: bool = True  # SGD
    weight_decay: float = 0.0
    patience: int = 5  # early stopping, epochs without a lower val loss
    lr_patience: int = 2  # reduce-on-plateau
    lr_factor: float = 0.5
    min_lr: float = 1e-6
    weights: str | None = None  # local pretrained weights for resnet18 / mobilenet_v3_small
    freeze: bool = False
    seed: int = 0
    val_fraction: float = 0.2
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        """Types and ranges; keys are relative to the dataset's section (the stage adds the section)."""
        choice(self.architecture, "architecture", ARCHITECTURES)
        choice(self.optimizer, "optimizer", OPTIMIZERS)
        number(self.image_size, "image_size", integer=True, minimum=16)
        number(self.epochs, "epochs", integer=True, minimum=1)
        number(self.batch_size, "batch_size", integer=True, minimum=1)
        number(self.lr, "lr", above=0)
        number(self.momentum, "momentum", minimum=0)
        number(self.weight_decay, "weight_decay", minimum=0)
        number(self.patience, "patience", integer=True, minimum=1)
        number(self.lr_patience, "lr_patience", integer=True, minimum=0)
        number(self.lr_factor, "lr_factor", above=0, below=1)
        number(self.min_lr, "min_lr", minimum=0)
        number(self.seed, "seed", integer=True, minimum=0)
        flag(self.nesterov, "nesterov")
        flag(self.freeze, "freeze")
        check_fraction(self.val_fraction, "val_fraction")
        if self.weights is not None and not isinstance(self.weights, str):
            raise ParamsError("weights", f"must be a local file path or null, not {self.weights!r}")
        if self.optimizer == "sgd" and self.nesterov and self.momentum <= 0:
            raise ParamsError("nesterov", "true needs momentum > 0 (or set nesterov: false)")

    @classmethod
    def from_params(cls, section: dict) -> TrainConfig:
        section = dict(mapping(section, ""))
        check_keys(section, [f for f in cls.__dataclass_fields__ if f != "augment"] + ["augment"])
        augment = mapping(section.pop("augment", {}), "augment")
        check_keys(augment, AugmentConfig.__dataclass_fields__, "augment")
        for name, value in augment.items():
            if name == "horizontal_flip":
                flag(value, "augment.horizontal_flip")
            else:
                number(value, f"augment.{name}", minimum=0)
        return cls(**section, augment=AugmentConfig(**augment))


def make_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


@dataclass
class FitResult:
    model: nn.Module
    history: list[dict]
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    resumed_from: int | None
    seconds: float


def evaluate_loss(model: nn.Module, batches: Batches, device: torch.device, amp: bool) -> tuple[float, float]:
    """(mean loss, accuracy) over ``batches`` without gradients."""
    model.eval()
    total, correct, n = 0.0, 0, 0
    with torch.no_grad(), torch.autocast(device.type, enabled=amp):
        for x, y in batches:
            logits = model(x)
            total += nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
    return total / max(n, 1), correct / max(n, 1)


def fit(
    images: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    num_classes: int,
    config: TrainConfig,
    device: torch.device,
    checkpoint: Path | None = None,
    key: str = "",
    stop_after: int | None = None,
) -> FitResult:
    """Train; ``checkpoint`` (with its ``key``) makes the run resumable. ``stop_after`` ends the
    process's share of the work after that many epochs, as an interruption would (for tests)."""
    start = time.perf_counter()
    generator = seed_everything(config.seed)
    amp = device.type == "cuda"
    model = build_model(config.architecture, num_classes, config.weights, config.freeze).to(device)
    optimizer = make_optimizer(config, model.parameters())
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=config.lr_factor, patience=config.lr_patience, min_lr=config.min_lr
    )
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    stopper = EarlyStopping(config.patience)
    train = Batches(images, labels, train_idx, config.batch_size, device, shuffle=True, generator=generator,
                    augment=BatchAugment(config.augment, generator))
    val = Batches(images, labels, val_idx if len(val_idx) else train_idx, config.batch_size, device, shuffle=False)
    if not len(val_idx):
        log.warning("no validation images: early stopping and checkpoints watch the training loss")
    history: list[dict] = []
    first_epoch, resumed_from = 0, None
    state = load_checkpoint(checkpoint, key) if checkpoint is not None else None
    loop = LoopState(model, optimizer, scheduler, scaler, stopper, generator)
    if state is not None:
        history, resumed_from = loop.restore(state)
        first_epoch = resumed_from + 1
        log.info("resuming from the checkpoint of epoch %d (%s)", state["epoch"] + 1, checkpoint)
    stopped = bool(history) and history[-1].get("stop", False)
    epoch = first_epoch
    for epoch in range(first_epoch, config.epochs if not stopped else first_epoch):
        model.train()
        total, correct, n = 0.0, 0, 0
        lr = optimizer.param_groups[0]["lr"]
        bar = tqdm(train, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False, disable=None)
        for b, (x, y) in enumerate(bar):
            with torch.autocast(device.type, enabled=amp):
                logits = model(x)
                loss = nn.functional.cross_entropy(logits.float(), y)
            check_finite(loss, epoch + 1, b + 1, lr)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
            bar.set_postfix(loss=f"{total / n:.4f}")
        val_loss, val_acc = evaluate_loss(model, val, device, amp)
        scheduler.step(val_loss)
        improved, stop = stopper.step(epoch, val_loss, model)
        row = {"epoch": epoch + 1, "loss": total / n, "accuracy": correct / n, "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr}
        history.append(row | {"stop": stop})
        log.info("epoch %d/%d  loss %.4f  acc %.3f  val_loss %.4f  val_acc %.3f  lr %.2g%s", epoch + 1, config.epochs,
                 row["loss"], row["accuracy"], val_loss, val_acc, lr, "  *" if improved else "")
        if checkpoint is not None:
            save_checkpoint(checkpoint, loop.snapshot(key, epoch, history))
        if stop:
            log.info("early stopping: no lower val loss for %d epochs; best was epoch %d", config.patience, stopper.best_epoch + 1)
            break
        if stop_after is not None and epoch + 1 - first_epoch >= stop_after:
            raise KeyboardInterrupt(f"stopped after {stop_after} epochs (as asked)")
    if stopper.best_state is not None:
        model.load_state_dict(stopper.best_state)  # restore the best weights, as Keras' restore_best_weights
    return FitResult(model, [{k: v for k, v in h.items() if k != "stop"} for h in history], stopper.best_epoch + 1,
                     stopper.best, bool(history) and history[-1].get("stop", False), resumed_from, time.perf_counter() - start)


def predict(model: nn.Module, images: np.ndarray, indices: np.ndarray, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities, N x classes."""
    batches = Batches(images, np.zeros(len(images), dtype=np.int64), indices, batch_size, device, shuffle=False)
    model.eval()
    out = []
    with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
        for x, _ in batches:
            out.append(torch.softmax(model(x).float(), 1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)
