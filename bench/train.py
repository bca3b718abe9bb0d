"""Training speed, measured in one run against plain PyTorch baselines on the same images.

    python bench/train.py [--copies 16] [--epochs 3]

1. Input pipeline: images per second delivered to the model (decoded, resized to 64x64, augmented,
   normalised, batched) over E epochs, against torchvision's ImageFolder + DataLoader (2 workers,
   the same augmentations as transforms) on the same Fruits-360 folder. Ours is measured twice:
   from a cold cache (decoding included) and warm (a later run or stage).
2. Training step rate: ``cvpipe.classification.fit.fit`` (augmentation off, checkpoints and
   validation on) against a bare loop (forward, loss, backward, step) over the same model and
   the same pre-normalised tensors. The goal is that orchestration costs nothing (>= 0.95x).
3. What the CPU pin costs (``train.cpu_pin``, cvpipe/core/cpu.py): the bare loop of the LittleVGG and
   of the course's U-Net, each in a process of its own (the pin is read per process) with the pin and
   without it, at ``train.cpu_threads`` (2) threads. Ratio: pinned steps/s over the machine's own kernels.

The sample's Fruits-360 images are replicated (hard links) to have enough to time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchtools import timed

from cvpipe.classification.data import AugmentConfig, BatchAugment, Batches, ImageTable, load_tensors, to_float
from cvpipe.classification.fit import TrainConfig, fit
from cvpipe.classification.models import LittleVGG
from cvpipe.core.cpu import PIN, pin_kernels
from cvpipe.data.classmap import ClassMap
from cvpipe.sources.samples import generate

AUG = AugmentConfig(rotation=15, width_shift=0.1, height_shift=0.1, shear=5, zoom=0.1, horizontal_flip=True)


def replicate(src: Path, dest: Path, copies: int) -> Path:
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        (dest / cls.name).mkdir(parents=True)
        for r in range(copies):
            for f in sorted(cls.iterdir()):
                os.link(f, dest / cls.name / f"r{r:03d}_{f.name}")
    return dest


def table_of(folder: Path) -> ImageTable:
    classes = ClassMap.from_names(sorted(p.name for p in folder.iterdir() if p.is_dir()))
    files = sorted(folder.glob("*/*.jpg"))
    return ImageTable(classes, files, [str(f.relative_to(folder)) for f in files],
                      np.array([classes.index_of(f.parent.name) for f in files]), np.array(["train"] * len(files)),
                      [f"{f.name}" for f in files])  # digests only key the cache here


def baseline_loader(folder: Path, epochs: int, batch: int) -> int:
    from torchvision import datasets, transforms

    tf = transforms.Compose([
        transforms.Resize((64, 64)),
        transforms.RandomAffine(AUG.rotation, (AUG.width_shift, AUG.height_shift), (1 - AUG.zoom, 1 + AUG.zoom), AUG.shear),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(folder), tf), batch_size=batch, shuffle=True, num_workers=2)
    n = 0
    for _ in range(epochs):
        for x, _y in loader:
            n += len(x)
    return n


def ours_loader(table: ImageTable, cache: Path, epochs: int, batch: int) -> int:
    images = load_tensors(table, 64, cache)
    g = torch.Generator().manual_seed(0)
    batches = Batches(images, table.labels, np.arange(len(table.labels)), batch, torch.device("cpu"), True, g, BatchAugment(AUG, g))
    n = 0
    for _ in range(epochs):
        for x, _y in batches:
            n += len(x)
    return n


def bare_loop(x_all: torch.Tensor, y_all: torch.Tensor, epochs: int, batch: int, classes: int) -> int:
    torch.manual_seed(0)
    model = LittleVGG(classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = 0
    for _ in range(epochs):
        model.train()
        for s in range(0, len(y_all), batch):
            loss = torch.nn.functional.cross_entropy(model(x_all[s : s + batch]), y_all[s : s + batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
    return steps


def pin_child(model: str, pin: bool, steps: int) -> float:
    """Steps per second of ``model``'s bare loop in a new process, pinned or not (its first tensor work comes after)."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in PIN}
    out = subprocess.run([sys.executable, __file__, "--pin-probe", model, "on" if pin else "off", str(steps)], env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def pin_probe(model: str, pin: str, steps: int) -> None:
    """The child of :func:`pin_child`: prints steps per second."""
    import time

    pin_kernels(pin == "on")
    torch.set_num_threads(2)
    torch.manual_seed(0)
    if model == "unet":
        from cvpipe.segmentation.models import UNet

        net, x, y = UNet(base=16, depth=4), torch.rand(16, 3, 96, 96), (torch.rand(16, 1, 96, 96) > 0.5).float()
        loss_of = torch.nn.functional.binary_cross_entropy_with_logits
    else:
        net, x, y = LittleVGG(10), torch.rand(32, 3, 64, 64), torch.randint(0, 10, (32,))
        loss_of = torch.nn.functional.cross_entropy
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for i in range(steps + 2):  # two warm-up steps
        if i == 2:
            start = time.perf_counter()
        loss = loss_of(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(steps / (time.perf_counter() - start))


def pin_cost(steps: int) -> None:
    print(f"CPU pin (train.cpu_pin): bare loops at 2 threads, capability {torch.backends.cpu.get_cpu_capability()} unpinned")
    for model in ("littlevgg", "unet"):
        free = max(pin_child(model, False, steps) for _ in range(2))
        pinned_rate = max(pin_child(model, True, steps) for _ in range(2))
        print(f"  {model:<10} machine's kernels {free:7.2f} steps/s   pinned {pinned_rate:7.2f} steps/s   x{pinned_rate / free:.2f}")


def main() -> None:
    if sys.argv[1:2] == ["--pin-probe"]:
        return pin_probe(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=16, help="replicas of the sample's 120 training images")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--pin-steps", type=int, default=20, help="steps per run of the CPU pin's comparison")
    parser.add_argument("--only-pin", action="store_true", help="only the CPU pin's comparison")
    args = parser.parse_args()
    if args.only_pin:
        return pin_cost(args.pin_steps)
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        sample = generate("fruits360", tmp / "sample")
        folder = replicate(sample / "Training", tmp / "train", args.copies)
        table = table_of(folder)
        n_images = len(table.labels)
        base_s, n = timed(lambda: baseline_loader(folder, args.epochs, args.batch))
        cold_s, _ = timed(lambda: ours_loader(table, tmp / "cache", args.epochs, args.batch))
        warm_s, _ = timed(lambda: ours_loader(table, tmp / "cache", args.epochs, args.batch))
        print(f"Input pipeline: {n_images} images x {args.epochs} epochs, 64x64, augmented, {os.cpu_count()} cores")
        print(f"  ImageFolder + DataLoader (2 workers)  {n / base_s:8.0f} img/s   x1.00")
        print(f"  cvpipe, cold cache (decodes once)     {n / cold_s:8.0f} img/s   x{base_s / cold_s:.2f}")
        print(f"  cvpipe, warm cache                    {n / warm_s:8.0f} img/s   x{base_s / warm_s:.2f}")

        images = load_tensors(table, 64, tmp / "cache")
        steps_n = min(n_images, 640)
        idx = np.arange(steps_n)
        x_all = to_float(torch.from_numpy(np.array(images[:steps_n])))
        y_all = torch.from_numpy(table.labels[:steps_n])
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch, patience=args.epochs + 1, augment=AugmentConfig())
        rounds = []
        for _ in range(2):  # alternate, best of two each
            bare_s, steps = timed(lambda: bare_loop(x_all, y_all, args.epochs, args.batch, len(table.classes)))
            fit_s, _ = timed(lambda: fit(images, table.labels, idx, idx[:args.batch], len(table.classes), config, torch.device("cpu"),
                                         tmp / "ckpt.pt", key=f"k{len(rounds)}"))
            rounds.append((bare_s, fit_s))
        bare_s, fit_s = min(r[0] for r in rounds), min(r[1] for r in rounds)
        print(f"Training steps: LittleVGG, {steps} steps of {args.batch} (64x64), CPU")
        print(f"  bare PyTorch loop                     {steps / bare_s:8.2f} steps/s   x1.00")
        print(f"  cvpipe fit (val + checkpoint/epoch)   {steps / fit_s:8.2f} steps/s   x{bare_s / fit_s:.2f}")
        shutil.rmtree(tmp / "cache", ignore_errors=True)
    pin_cost(args.pin_steps)


if __name__ == "__main__":
    main()
