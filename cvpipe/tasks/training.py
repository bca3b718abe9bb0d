"""Task-independent training pieces: device choice, seeds, early stopping, resumable checkpoints, DDP.

The classifiers and the U-Net use them; detection trains through ultralytics, which has its own loop
(and launches its own DDP for a device list).

Several devices (``train.device: [0, 1]``) train the torch tasks with DistributedDataParallel, one
process per device, started by torchrun (``torchrun --nproc-per-node 2 -m stages.train ...``). The
result is defined by its single-process equivalent (:func:`run_epochs`): ``batch_size`` stays the
global batch, and each of the N ranks trains on its shard of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvpipe.core.errors import ParamsError, TrainingError
from cvpipe.core.io import atomic_path

log = logging.getLogger(__name__)


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when there is one (or as asked), else CPU; asking for CUDA without one is an error. Of a
    device list (``cuda:0,1``, checked against the machine) the first: one process uses one device."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    indices = device_indices(requested)
    if indices is not None:
        return torch.device("cuda", indices[0])
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {requested!r} was asked for, but torch sees no CUDA device")
    return device


def device_indices(requested: str) -> list[int] | None:
    """The CUDA devices of a device list (``cuda:0,1``, what :func:`cvpipe.core.params.device_setting` makes of
    ``[0, 1]``), checked against this machine; None for one device (``auto``, ``cpu``, ``cuda:N``)."""
    if not requested.startswith("cuda:") or "," not in requested:
        return None
    indices = [int(i) for i in requested.removeprefix("cuda:").split(",")]
    have = torch.cuda.device_count()
    if max(indices) >= have:
        raise ParamsError("train.device", f"lists {len(indices)} CUDA devices ({','.join(map(str, indices))}), "
                                          f"but this machine has {have}" + (f" (0 to {have - 1})" if have else ""))
    return indices


class TorchrunRequired(ParamsError):
    """A device list for a torch trainer outside torchrun: one process per device is torchrun's job."""

    def __init__(self, processes: int, command: str = "-m stages.train --dataset <name>") -> None:
        self.processes, self.command = processes, command
        super().__init__("train.device", f"lists {processes} CUDA devices; the torch trainers use several as one "
                                         f"process per device (DDP): run torchrun --nproc-per-node {processes} {command}")

    def running(self, command: str) -> TorchrunRequired:
        """The same refusal naming the exact command (what the stage was started with)."""
        return TorchrunRequired(self.processes, command)


@dataclass(frozen=True)
class Ranks:
    """This process's place among torchrun's (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``);
    world 1: alone.

    The collectives below do nothing for a single process, so the loop reads the same either way.
    """

    rank: int = 0
    world: int = 1
    local: int = 0
    local_world: int = 1  # the processes on this machine

    @classmethod
    def from_env(cls) -> Ranks:
        env = os.environ
        world = int(env.get("WORLD_SIZE", 1))
        return cls(int(env.get("RANK", 0)), world, int(env.get("LOCAL_RANK", 0)), int(env.get("LOCAL_WORLD_SIZE", world)))

    @property
    def record(self) -> dict[str, int]:
        """What train.json and the checkpoint key add under DDP (N processes train other weights than one)."""
        return {"processes": self.world} if self.world > 1 else {}

    def others(self) -> str:
        """For a log line: `` and N more processes (DDP)``, or nothing when alone."""
        return f" and {self.world - 1} more processes (DDP)" if self.world > 1 else ""

    @property
    def main(self) -> bool:
        """Rank 0, the one that writes outputs, checkpoints and logs."""
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's consecutive share of a global batch (``tensor_split``: sizes differ by at most one)."""
        return batch if self.world == 1 else batch.tensor_split(self.world)[self.rank]

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``model`` in DistributedDataParallel (gradients averaged over ranks), or itself when alone.

        Buffers are not copied from rank 0 before each forward: :meth:`average_buffers` averages them after
        each step.
        """
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                       forward_sync_buffers=False)

    def average_buffers(self, model: torch.nn.Module) -> None:
        """Every rank's BatchNorm running statistics replaced by their mean over the ranks."""
        if self.world == 1:
            return
        import torch.distributed as dist

        buffers = [b for b in model.buffers() if b.is_floating_point()]
        if buffers:
            flat = torch.cat([b.reshape(-1) for b in buffers])
            dist.all_reduce(flat)
            flat /= self.world
            for b, value in zip(buffers, flat.split([b.numel() for b in buffers]), strict=True):
                b.copy_(value.view_as(b))

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """``values`` summed over the ranks (float64)."""
        if self.world == 1:
            return values
        import torch.distributed as dist

        total = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return total.tolist()

    def from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (so every rank decides on the same numbers)."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gathered(self, value: Any) -> list[Any]:
        """Every rank's ``value``, by rank."""
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block before the others (it fills a cache the others then read)."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()


ALONE = Ranks()  # a single process


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s global torch RNG (dropout) under DDP: its own stream, fixed by ``seed``."""
    return int(fingerprint("rank", seed, rank), 16)


def training_device(requested: str, ranks: Ranks | None = None) -> tuple[torch.device, Ranks]:
    """(this process's device, its ranks) for a torch trainer; checked before anything is loaded.

    Outside torchrun a device list of several is refused with the torchrun command; under torchrun
    (``WORLD_SIZE`` > 1) rank r trains on the r-th listed device (``auto`` or ``cuda``: ``cuda:LOCAL_RANK``;
    ``cpu``: the CPU, with gloo), and the list must have one device per process.
    """
    ranks = ranks if ranks is not None else Ranks.from_env()
    indices = device_indices(requested)
    if indices is not None and ranks.world == 1 and len(indices) > 1:
        raise TorchrunRequired(len(indices))
    if ranks.world == 1:
        return pick_device(requested), ranks
    if indices is not None and len(indices) != ranks.local_world:
        raise ParamsError("train.device", f"lists {len(indices)} CUDA devices, but torchrun started {ranks.local_world} "
                                          f"processes on this machine; give --nproc-per-node {len(indices)}")
    if indices is None and requested.startswith("cuda:"):
        raise ParamsError("train.device", f"is {requested!r}, one device for {ranks.local_world} processes; list one per "
                                          "process ([0, 1]) or give cuda")
    device = pick_device(requested)
    if device.type == "cuda" and indices is None:
        indices = list(range(ranks.local_world))
        if ranks.local_world > torch.cuda.device_count():
            raise ParamsError("train.device", f"is {requested!r} under torchrun with {ranks.local_world} processes on this "
                                              f"machine, but it has {torch.cuda.device_count()} CUDA devices")
    if device.type == "cuda":
        device = torch.device("cuda", indices[ranks.local])
    elif device.type != "cpu":
        raise ParamsError("train.device", f"is {requested!r}; DDP runs on CUDA devices or the CPU")
    return device, ranks


def on_ranks(requested: str, train: Callable[[torch.device, Ranks], Any]) -> Any:
    """``train(device, ranks)`` on this process's device (:func:`training_device`), inside torchrun's process
    group when there is one: how a torch task's ``train`` runs alone and under DDP alike."""
    device, ranks = training_device(requested)  # a device list outside torchrun stops here, before any image is read
    with process_group(ranks, device):
        return train(device, ranks)


@contextmanager
def process_group(ranks: Ranks, device: torch.device) -> Iterator[Ranks]:
    """The torchrun processes joined for the block (NCCL on CUDA, gloo on the CPU); nothing when alone."""
    if ranks.world == 1:
        yield ranks
        return
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ranks.rank, world_size=ranks.world)
    try:
        yield ranks
    finally:
        dist.destroy_process_group()


class TorchTraining:
    """``Task.train`` of a torch task: its CPU threads set, then alone or on torchrun's ranks (:func:`on_ranks`).
    The task gives ``_train(data_dir, out, config, device, ranks, cache_dir, stop_after)``."""

    def train(self, data_dir: Path, out: Path, config: Any, compute: Any, stop_after: int | None = None) -> Any:
        """Train ``config``'s model on ``data_dir`` into ``out`` (see :class:`~cvpipe.tasks.Task`)."""
        set_cpu_threads(compute.cpu_threads)
        return on_ranks(compute.device, lambda dev, ranks: self._train(data_dir, out, config, dev, ranks, compute.cache_dir,
                                                                         stop_after))


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
    ranks: Ranks = ALONE,
) -> FitResult:
    """The epoch loop every torch task shares: train on ``batches`` (``step(x, y)`` gives the loss and sums
    to average per sample, such as correct answers), ``validate()`` (``val_loss`` first), the LR scheduler
    on the val loss, early stopping, an atomic checkpoint per epoch (resumed when ``checkpoint`` with
    this ``key`` exists), the best weights restored at the end. ``stop_after`` ends the process's share
    after that many epochs, as an interruption would (for tests).

    Under DDP (``ranks.world`` = N > 1, ``step`` calling the model through :meth:`Ranks.wrap`) every rank
    draws the same global batches from ``batches`` (same order, same augmentation) and trains on its
    shard (:meth:`Ranks.shard`); rank 0's validation figures decide the scheduler and early stopping
    everywhere, and only rank 0 writes the checkpoint. The result is, up to float rounding, that of this
    single-process equivalent: for each global batch of B images, split into N consecutive shards
    (``tensor_split``), for each shard r from the same weights and BatchNorm running statistics, a
    forward and backward pass of ``loss_r * N * len(shard_r) / B`` (so the gradients average to the
    per-image mean of the whole batch) drawing dropout from torch's global RNG seeded with
    ``rank_seed(seed, r)``; then the mean of the N gradients is the optimiser's step and the mean of the
    N running statistics the new ones. BatchNorm thus normalises each shard by its own statistics
    (SyncBatchNorm is not used: it does not run on the CPU, and the CPU and GPUs keep one definition).
    A global batch of fewer than 2N images (only an epoch's last) is left out under DDP: a shard of one
    image cannot be batch-normalised.
    """
    start = time.perf_counter()
    history, first_epoch, resumed_from = resume(loop, checkpoint, key, ranks)
    stopped = bool(history) and history[-1].get("stop", False)
    for epoch in range(first_epoch, epochs if not stopped else first_epoch):
        lr = loop.optimizer.param_groups[0]["lr"]
        total, sums, n = train_epoch(loop, batches, step, device, ranks, (epoch + 1, epochs), lr)
        validated = ranks.from_main(validate())
        loop.scheduler.step(validated["val_loss"])
        improved, stop = loop.stopper.step(epoch, validated["val_loss"], loop.model)
        row = {"epoch": epoch + 1, "loss": total / n} | {k: v / n for k, v in sums.items()} | validated | {"lr": lr}
        history.append(row | {"stop": stop})
        figures = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "lr"))
        if ranks.main:
            log.info("epoch %d/%d  %s  lr %.2g%s", epoch + 1, epochs, figures, lr, "  *" if improved else "")
        if checkpoint is not None:
            rank_rng = ranks.gathered(rng_states()) if ranks.world > 1 else None
            if ranks.main:
                save_checkpoint(checkpoint, loop.snapshot(key, epoch, history) | ({"rank_rng": rank_rng} if rank_rng else {}))
        if stop:
            if ranks.main:
                log.info("early stopping: no lower val loss for %d epochs; best was epoch %d", loop.stopper.patience,
                         loop.stopper.best_epoch + 1)
            break
        if stop_after is not None and epoch + 1 - first_epoch >= stop_after:
            raise KeyboardInterrupt(f"stopped after {stop_after} epochs (as asked)")
    if loop.stopper.best_state is not None:
        loop.model.load_state_dict(loop.stopper.best_state)  # restore the best weights, as Keras' restore_best_weights
    return FitResult(loop.model, [{k: v for k, v in h.items() if k != "stop"} for h in history], loop.stopper.best_epoch + 1,
                     loop.stopper.best, bool(history) and history[-1].get("stop", False), resumed_from,
                     time.perf_counter() - start)


def resume(loop: LoopState, checkpoint: Path | None, key: str, ranks: Ranks) -> tuple[list[dict], int, int | None]:
    """(history, first epoch to train, epoch resumed from or None): ``loop`` restored from ``checkpoint`` when it
    is this run's (``key``); under DDP each rank's global RNG restored, or seeded by its rank on a fresh start."""
    state = load_checkpoint(checkpoint, key) if checkpoint is not None else None
    if state is None:
        if ranks.world > 1:
            torch.manual_seed(rank_seed(loop.generator.initial_seed(), ranks.rank))
        return [], 0, None
    history, resumed_from = loop.restore(state)
    if ranks.world > 1:
        set_rng_states(state["rank_rng"][ranks.rank])
    if ranks.main:
        log.info("resuming from the checkpoint of epoch %d (%s)", resumed_from + 1, checkpoint)
    return history, resumed_from + 1, resumed_from


def train_epoch(loop: LoopState, batches: Iterable, step: Callable[[Any, Any], tuple[torch.Tensor, dict[str, float]]],
                device: torch.device, ranks: Ranks, epoch: tuple[int, int], lr: float) -> tuple[float, dict[str, float], int]:
    """One pass over ``batches`` (epoch ``epoch[0]`` of ``epoch[1]``, at ``lr``) as :func:`run_epochs` describes:
    (summed loss, summed ``step`` counts, images), summed over the ranks under DDP."""
    from tqdm.auto import tqdm

    model, optimizer = loop.model, loop.optimizer
    model.train()
    total, sums, n, skipped = 0.0, {}, 0, 0
    bar = tqdm(batches, desc=f"epoch {epoch[0]}/{epoch[1]}", unit="batch", leave=False, disable=None if ranks.main else True)
    for b, (whole_x, whole_y) in enumerate(bar):
        if ranks.world > 1 and len(whole_y) < 2 * ranks.world:
            skipped += len(whole_y)
            continue
        x, y = ranks.shard(whole_x), ranks.shard(whole_y)  # the whole batch when alone
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            loss, counts = step(x, y)
        check_finite(loss, epoch[0], b + 1, lr)
        optimizer.zero_grad(set_to_none=True)
        loop.scaler.scale(loss if ranks.world == 1 else loss * (ranks.world * len(y) / len(whole_y))).backward()
        loop.scaler.step(optimizer)
        loop.scaler.update()
        ranks.average_buffers(model)
        total += loss.item() * len(y)
        sums = {k: sums.get(k, 0) + v for k, v in counts.items()}
        n += len(y)
        bar.set_postfix(loss=f"{total / n:.4f}")
    if ranks.world > 1:
        total, n, *values = ranks.sum([total, n, *sums.values()], device)
        sums = dict(zip(sums, values, strict=True))
        if skipped and ranks.main:
            log.info("left out the last %d images of the epoch: fewer than 2 per process", skipped)
    return total, sums, n


def rng_states() -> dict[str, Any]:
    """This process's global torch RNG states (dropout draws from them), CUDA's too."""
    return {"torch_rng": torch.get_rng_state()} | ({"cuda_rng": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {})


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch_rng"])
    if "cuda_rng" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda_rng"])


def check_finite(loss: torch.Tensor, epoch: int, batch: int, lr: float) -> None:
    if not torch.isfinite(loss):
        raise TrainingError(
            f"loss is {loss.item()} at epoch {epoch}, batch {batch} (learning rate {lr:g}); "
            "lower the learning rate or check the inputs for NaNs"
        )


def cpu_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
