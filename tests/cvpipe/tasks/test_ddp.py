"""Several devices: ``train.device`` lists, the refusals, and DDP against its single-process equivalent."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from cvpipe.classification.data import AugmentConfig, BatchAugment, Batches
from cvpipe.classification.fit import TrainConfig, evaluate_loss, fit, make_optimizer
from cvpipe.classification.models import build_model
from cvpipe.core.errors import ParamsError
from cvpipe.core.params import device_setting
from cvpipe.tasks.training import Ranks, TorchrunRequired, pick_device, rank_seed, seed_everything, training_device
from tests.conftest import REPO
from tests.cvpipe.classification.conftest import squares

CPU = torch.device("cpu")
WORLD = 2


@pytest.mark.parametrize(("value", "expected"), [
    ("auto", "auto"), ("cpu", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda:1"), (0, "cuda:0"), ("1", "cuda:1"),
    ([0, 1], "cuda:0,1"), ("0,1", "cuda:0,1"), ("0, 1", "cuda:0,1"), ("cuda:2,3", "cuda:2,3"),
])
def test_device_lists_are_read_as_ultralytics_reads_them(value, expected):
    assert device_setting(value) == expected


@pytest.mark.parametrize(("value", "message"), [
    ("gpu", "train.device: is 'gpu'; choose auto, cpu, cuda or cuda:N, or several CUDA devices as a list"),
    ([0, 0], "train.device: is [0, 0]; each CUDA device may be listed once"),
    ([], "train.device: is []; choose auto"),
    ([-1], "train.device: is [-1]; choose auto"),
    ("cuda:x", "train.device: is 'cuda:x'; choose auto"),
])
def test_a_bad_device_is_named(value, message):
    with pytest.raises(ParamsError, match=f"^params.yaml: {message}".replace("[", r"\[").replace("]", r"\]")):
        device_setting(value)


def test_more_cuda_devices_than_the_machine_has_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ParamsError, match=r"^params.yaml: train.device: lists 2 CUDA devices \(0,1\), but this machine has 0$"):
        training_device("cuda:0,1", Ranks())
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ParamsError, match=r"lists 2 CUDA devices \(1,2\), but this machine has 2 \(0 to 1\)$"):
        pick_device("cuda:1,2")  # evaluation checks the list too
    from cvpipe.detection.fit import check_device

    assert check_device("cuda:0,1") == "cuda:0,1"  # ultralytics gets the list and starts its own DDP
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ParamsError, match="but this machine has 1"):
        check_device("cuda:0,1")


def test_a_device_list_outside_torchrun_names_the_command(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    with pytest.raises(TorchrunRequired, match=r"lists 3 CUDA devices; .* run torchrun --nproc-per-node 3 -m stages.train"):
        training_device("cuda:0,2,3", Ranks())
    assert pick_device("cuda:2,3") == torch.device("cuda", 2)  # one process (evaluate) uses the first
    # under torchrun, each process takes its own device of the list, and the list must match the processes
    assert training_device("cuda:0,2,3", Ranks(rank=1, world=3, local=1, local_world=3))[0] == torch.device("cuda", 2)
    with pytest.raises(ParamsError, match="lists 3 CUDA devices, but torchrun started 2 processes on this machine; give "
                                          "--nproc-per-node 3"):
        training_device("cuda:0,2,3", Ranks(rank=0, world=2, local=0, local_world=2))
    with pytest.raises(ParamsError, match="is 'cuda:1', one device for 2 processes"):
        training_device("cuda:1", Ranks(rank=0, world=2, local=0, local_world=2))
    assert training_device("cpu", Ranks(rank=1, world=2, local=1, local_world=2))[0] == CPU  # gloo on the CPU


def test_the_train_stage_refuses_before_anything_trains(tmp_path, monkeypatch, capsys):
    from stages import train

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["device"] = [0, 1]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    argv = ["--dataset", "fruits360", "--data-dir", str(tmp_path / "absent"), "--out", str(tmp_path / "out"), "--params", str(path)]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert train.main(argv) == 1
    assert capsys.readouterr().err == f"error: {path}: train.device: lists 2 CUDA devices (0,1), but this machine has 0\n"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert train.main(argv) == 1
    assert capsys.readouterr().err.endswith(
        f"run torchrun --nproc-per-node 2 -m stages.train --dataset fruits360 --data-dir {tmp_path / 'absent'} "
        f"--out {tmp_path / 'out'} --params {path}\n")
    assert not (tmp_path / "out").exists()


# The DDP check: what two gloo processes train in one epoch, and the single-process equivalent.

def tiny() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, TrainConfig]:
    """36 squares, 27 to train on in global batches of 11 (11, 11, 5: shards of 6+5, 6+5, 3+2), with
    augmentation and dropout, so unequal shards, the shared augmentation and each rank's RNG all count."""
    images, labels = squares()
    idx = np.arange(len(labels))
    config = TrainConfig(image_size=16, epochs=1, batch_size=11, lr=0.005, seed=3,
                         augment=AugmentConfig(width_shift=0.1, rotation=10, horizontal_flip=True))
    return images, labels, idx[idx % 4 != 0], idx[idx % 4 == 0], config


WORKER = """
import sys, torch
from cvpipe.classification.fit import fit
from cvpipe.tasks.training import process_group, set_cpu_threads, training_device
from tests.cvpipe.tasks.test_ddp import tiny

set_cpu_threads(1)
device, ranks = training_device("cpu")
with process_group(ranks, device):
    images, labels, train, val, config = tiny()
    result = fit(images, labels, train, val, 3, config, device, checkpoint=__import__("pathlib").Path(sys.argv[1]) / "ckpt.pt",
                 key="k", ranks=ranks)
    if ranks.main:
        torch.save({"state": result.model.state_dict(), "history": result.history}, sys.argv[1] + "/rank0.pt")
"""


def single_process_equivalent(images, labels, train, config: TrainConfig, world: int) -> torch.nn.Module:
    """run_epochs' documented equivalent of ``world`` ranks, one epoch, written out: each global batch split
    into ``world`` consecutive shards, each from the same weights and BatchNorm statistics with its rank's
    dropout RNG, loss_r * world * len(shard_r) / len(batch); the mean of the gradients steps, the mean of
    the running statistics stays; a batch of fewer than 2 * world images is left out."""
    generator = seed_everything(config.seed)
    model = build_model(config.architecture, 3)
    optimizer = make_optimizer(config, model.parameters())
    batches = Batches(images, labels, train, config.batch_size, CPU, shuffle=True, generator=generator,
                      augment=BatchAugment(config.augment, generator))
    rng = []
    for r in range(world):
        torch.manual_seed(rank_seed(config.seed, r))
        rng.append(torch.get_rng_state())
    model.train()
    for x, y in batches:
        if len(y) < 2 * world:
            continue
        optimizer.zero_grad(set_to_none=True)
        before = {k: b.clone() for k, b in model.named_buffers()}
        after = []
        for r, (xs, ys) in enumerate(zip(x.tensor_split(world), y.tensor_split(world), strict=True)):
            for k, b in model.named_buffers():
                b.copy_(before[k])
            torch.set_rng_state(rng[r])
            loss = torch.nn.functional.cross_entropy(model(xs).float(), ys)
            (loss * (world * len(ys) / len(y))).backward()
            rng[r] = torch.get_rng_state()
            after.append({k: b.clone() for k, b in model.named_buffers()})
        for p in model.parameters():
            p.grad /= world
        for k, b in model.named_buffers():
            b.copy_(sum(a[k] for a in after) / world if b.is_floating_point() else after[0][k])
        optimizer.step()
    return model


@pytest.mark.slow
def test_two_gloo_processes_train_what_the_single_process_equivalent_trains(tmp_path):
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={WORLD}",
                          str(script), str(tmp_path)], check=False, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    ddp = torch.load(tmp_path / "rank0.pt", weights_only=True)
    checkpoint = torch.load(tmp_path / "ckpt.pt", weights_only=True)  # written by rank 0, with each rank's RNG
    assert len(checkpoint["rank_rng"]) == WORLD and checkpoint["epoch"] == 0

    images, labels, train, val, config = tiny()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = single_process_equivalent(images, labels, train, config, WORLD)
        val_loss, val_accuracy = evaluate_loss(reference, Batches(images, labels, val, 11, CPU, shuffle=False), CPU, False)
        plain = fit(images, labels, train, val, 3, config, CPU).model.state_dict()  # one process, one batch of 11
    finally:
        torch.set_num_threads(threads)
    expected = reference.state_dict()
    assert list(ddp["state"]) == list(expected)
    worst = max((ddp["state"][k].double() - v.double()).abs().max().item() for k, v in expected.items())
    assert worst <= 1e-6, f"DDP differs from its single-process equivalent by {worst}"
    assert ddp["history"][0]["val_loss"] == pytest.approx(val_loss, abs=1e-6)  # validation reduced over the ranks
    assert ddp["history"][0]["val_accuracy"] == pytest.approx(val_accuracy)
    # the comparison can fail: batch-normalising whole batches in one process trains other weights
    assert max((plain[k].double() - v.double()).abs().max().item() for k, v in expected.items()) > 1e-4
