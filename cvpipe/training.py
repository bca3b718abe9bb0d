"""Task-independent training pieces: device choice, seeds, early stopping, resumable checkpoints.

The classifiers and the U-Net use them; detection trains through ultralytics, which has its own loop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvpipe.errors import TrainingError
from cvpipe.io import atomic_path

log = logging.getLogger(__name__)


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when there is one (or as asked), else CPU; asking for CUDA without one is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {requested!r} was asked for, but torch sees no CUDA device")
    return device


def set_cpu_threads(threads: int) -> None:
    """Compute with exactly ``threads`` CPU threads (``train.cpu_threads``), whatever the environment says."""
    torch.set_num_threads(threads)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); returns a CPU generator for shuffling and augmentation."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    # Deterministic kernels where torch has a choice (warn, not fail, where an op has none).
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def fingerprint(*parts: Any) -> str:
    """A short content key for JSON-able parts (data digests, params, code versions)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class EarlyStopping:
    """Stop after ``patience`` epochs without a lower validation loss; remember the best weights."""

    patience: int
    min_delta: float = 0.0
    best: float = float("inf")
    best_epoch: int = -1
    waited: int = 0
    best_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def step(self, epoch: int, val_loss: float, model: torch.nn.Module) -> tuple[bool, bool]:
        """(improved, stop) after an epoch."""
        if val_loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.waited = val_loss, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return True, False
        self.waited += 1
        return False, self.waited >= self.patience

    def state(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "best_state"} | {"best_state": self.best_state}

    def load(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


def save_checkpoint(path: Path, state: dict) -> None:
    """Written atomically: an interruption while saving leaves the previous checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, key: str) -> dict | None:
    """The checkpoint at ``path`` if it belongs to this run (same ``key``), else None."""
    if not path.is_file():
        return None
    try:  # tensors and plain values only: a pickle that would run code is refused, never executed
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign checkpoint is ignored, not fatal
        log.warning("ignoring checkpoint %s, which is not a plain checkpoint: %s", path, str(exc).splitlines()[0])
        return None
    if state.get("key") != key:
        log.info("checkpoint %s is for other data or params; starting afresh", path)
        return None
    return state


@dataclass
class LoopState:
    """Everything a torch training loop needs to continue exactly where it stopped."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    stopper: EarlyStopping
    generator: torch.Generator

    def snapshot(self, key: str, epoch: int, history: list[dict]) -> dict:
        """The checkpoint after ``epoch``: plain tensors and values, so ``weights_only`` loads it."""
        return {
            "key": key, "epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "stopper": self.stopper.state(),
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(), "history": history,
        } | ({"cuda_rng": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {})

    def restore(self, state: dict) -> tuple[list[dict], int]:
        """Load a :meth:`snapshot`; returns its history and the epoch it ended with."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.stopper.load(state["stopper"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():  # dropout on the GPU draws from these
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return state["history"], state["epoch"]


@dataclass
class FitResult:
    model: torch.nn.Module
    history: list[dict]
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    resumed_from: int | None
    seconds: float


def run_epochs(
    loop: LoopState,
    epochs: int,
    batches: Iterable,
    step: Callable[[Any, Any], tuple[torch.Tensor, dict[str, float]]],
    validate: Callable[[], dict[str, float]],
    device: torch.device,
    checkpoint: Path | None = None,
    key: str = "",
    stop_after: int | None = None,
) -> FitResult:
    """The epoch loop every torch task shares: train on ``batches`` (``step(x, y)`` gives the loss and sums
    to average per sample, such as correct answers), ``validate()`` (``val_loss`` first), the LR scheduler
    on the val loss, early stopping, an atomic checkpoint per epoch (resumed when ``checkpoint`` with
    this ``key`` exists), the best weights restored at the end. ``stop_after`` ends the process's share
    after that many epochs, as an interruption would (for tests)."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    amp = device.type == "cuda"
    model, optimizer, stopper = loop.model, loop.optimizer, loop.stopper
    history: list[dict] = []
    first_epoch, resumed_from = 0, None
    state = load_checkpoint(checkpoint, key) if checkpoint is not None else None
    if state is not None:
        history, resumed_from = loop.restore(state)
        first_epoch = resumed_from + 1
        log.info("resuming from the checkpoint of epoch %d (%s)", resumed_from + 1, checkpoint)
    stopped = bool(history) and history[-1].get("stop", False)
    for epoch in range(first_epoch, epochs if not stopped else first_epoch):
        model.train()
        total, sums, n = 0.0, {}, 0
        lr = optimizer.param_groups[0]["lr"]
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False, disable=None)
        for b, (x, y) in enumerate(bar):
            with torch.autocast(device.type, enabled=amp):
                loss, counts = step(x, y)
            check_finite(loss, epoch + 1, b + 1, lr)
            optimizer.zero_grad(set_to_none=True)
            loop.scaler.scale(loss).backward()
            loop.scaler.step(optimizer)
            loop.scaler.update()
            total += loss.item() * len(y)
            sums = {k: sums.get(k, 0) + v for k, v in counts.items()}
            n += len(y)
            bar.set_postfix(loss=f"{total / n:.4f}")
        validated = validate()
        loop.scheduler.step(validated["val_loss"])
        improved, stop = stopper.step(epoch, validated["val_loss"], model)
        row = {"epoch": epoch + 1, "loss": total / n} | {k: v / n for k, v in sums.items()} | validated | {"lr": lr}
        history.append(row | {"stop": stop})
        figures = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "lr"))
        log.info("epoch %d/%d  %s  lr %.2g%s", epoch + 1, epochs, figures, lr, "  *" if improved else "")
        if checkpoint is not None:
            save_checkpoint(checkpoint, loop.snapshot(key, epoch, history))
        if stop:
            log.info("early stopping: no lower val loss for %d epochs; best was epoch %d", stopper.patience, stopper.best_epoch + 1)
            break
        if stop_after is not None and epoch + 1 - first_epoch >= stop_after:
            raise KeyboardInterrupt(f"stopped after {stop_after} epochs (as asked)")
    if stopper.best_state is not None:
        model.load_state_dict(stopper.best_state)  # restore the best weights, as Keras' restore_best_weights
    return FitResult(model, [{k: v for k, v in h.items() if k != "stop"} for h in history], stopper.best_epoch + 1,
                     stopper.best, bool(history) and history[-1].get("stop", False), resumed_from, time.perf_counter() - start)


def check_finite(loss: torch.Tensor, epoch: int, batch: int, lr: float) -> None:
    if not torch.isfinite(loss):
        raise TrainingError(
            f"loss is {loss.item()} at epoch {epoch}, batch {batch} (learning rate {lr:g}); "
            "lower the learning rate or check the inputs for NaNs"
        )


def cpu_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
