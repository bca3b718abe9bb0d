"""The classification training loop: augment, optimise, checkpoint, stop early, resume.

Keras-style callbacks as plain code: the best weights by validation loss are kept (and restored at
the end), early stopping has a patience, the learning rate drops on a plateau. Every epoch a
checkpoint (model, optimiser, scheduler, scaler, RNG and callback state) is written atomically, so an
interrupted run resumes where it stopped and ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cvpipe.classification.data import AugmentConfig, BatchAugment, Batches
from cvpipe.classification.models import ARCHITECTURES, build_model
from cvpipe.core.errors import ParamsError
from cvpipe.core.params import check_keys, choice, flag, mapping, number
from cvpipe.data.splits import check_fraction
from cvpipe.tasks.training import ALONE, EarlyStopping, FitResult, LoopState, Ranks, run_epochs, seed_everything

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


def evaluate_loss(model: nn.Module, batches: Batches, device: torch.device, amp: bool,
                  ranks: Ranks = ALONE) -> tuple[float, float]:
    """(mean loss, accuracy) over ``batches`` without gradients; under DDP each rank brings its share of
    the images (``batches`` of its own) and the sums are added over the ranks."""
    model.eval()
    total, correct, n = 0.0, 0, 0
    with torch.no_grad(), torch.autocast(device.type, enabled=amp):
        for x, y in batches:
            logits = model(x)
            total += nn.functional.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
    if ranks.world > 1:
        total, correct, n = ranks.sum([total, correct, n], device)
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
    ranks: Ranks = ALONE,
) -> FitResult:
    """Train; ``checkpoint`` (with its ``key``) makes the run resumable. ``stop_after`` ends the
    process's share of the work after that many epochs, as an interruption would (for tests).

    ``ranks`` (torchrun's, :func:`cvpipe.tasks.training.training_device`) trains with DDP: ``batch_size`` stays
    the global batch, each rank trains on its shard of it, and the result is that of the single-process
    equivalent :func:`cvpipe.tasks.training.run_epochs` documents. Validation is split over the ranks by image."""
    generator = seed_everything(config.seed)
    amp = device.type == "cuda"
    model = build_model(config.architecture, num_classes, config.weights, config.freeze).to(device)
    optimizer = make_optimizer(config, model.parameters())
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=config.lr_factor, patience=config.lr_patience, min_lr=config.min_lr
    )
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    # alone, a last batch of one image is left out (BatchNorm); under DDP run_epochs leaves out what is too small to shard
    train = Batches(images, labels, train_idx, config.batch_size, device, shuffle=True, generator=generator,
                    augment=BatchAugment(config.augment, generator), drop_single=ranks.world == 1)
    watched = val_idx if len(val_idx) else train_idx
    val = Batches(images, labels, np.array_split(watched, ranks.world)[ranks.rank], config.batch_size, device, shuffle=False)
    if not len(val_idx) and ranks.main:
        log.warning("no validation images: early stopping and checkpoints watch the training loss")
    net = ranks.wrap(model, device)

    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        logits = net(x)
        return nn.functional.cross_entropy(logits.float(), y), {"accuracy": (logits.argmax(1) == y).sum().item()}

    def validate() -> dict[str, float]:
        val_loss, val_acc = evaluate_loss(model, val, device, amp, ranks)
        return {"val_loss": val_loss, "val_accuracy": val_acc}

    loop = LoopState(model, optimizer, scheduler, scaler, EarlyStopping(config.patience), generator)
    return run_epochs(loop, config.epochs, train, step, validate, device, checkpoint, key, stop_after, ranks)


def predict(model: nn.Module, images: np.ndarray, indices: np.ndarray, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities, N x classes."""
    batches = Batches(images, np.zeros(len(images), dtype=np.int64), indices, batch_size, device, shuffle=False)
    model.eval()
    out = []
    with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
        for x, _ in batches:
            out.append(torch.softmax(model(x).float(), 1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)
