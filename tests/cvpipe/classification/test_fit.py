from __future__ import annotations

import numpy as np
import pytest
import torch

from cvpipe.classification.data import AugmentConfig
from cvpipe.classification.fit import TrainConfig, fit, predict
from cvpipe.tasks.training import TrainingError, pick_device
from tests.cvpipe.classification.conftest import squares

CPU = torch.device("cpu")


def split(n: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(n)
    return idx[idx % 4 != 0], idx[idx % 4 == 0]


def config(**kw) -> TrainConfig:
    base = {"image_size": 16, "epochs": 8, "batch_size": 8, "lr": 0.005, "patience": 4, "seed": 1,
            "augment": AugmentConfig(width_shift=0.05, horizontal_flip=True)}
    return TrainConfig(**(base | kw))


def test_learns_the_squares_and_restores_the_best_weights():
    images, labels = squares()
    train, val = split(len(labels))
    result = fit(images, labels, train, val, 3, config(), CPU)
    assert result.history[-1]["epoch"] == len(result.history) <= 8
    best = min(result.history, key=lambda h: h["val_loss"])
    assert result.best_epoch == best["epoch"] and result.best_val_loss == pytest.approx(best["val_loss"])
    probs = predict(result.model, images, val, CPU)
    assert (probs.argmax(1) == labels[val]).mean() >= 0.9  # the restored (best) weights, not the last ones


def test_an_interrupted_run_resumes_to_the_same_result(tmp_path):
    images, labels = squares()
    train, val = split(len(labels))
    whole = fit(images, labels, train, val, 3, config(epochs=5, patience=10), CPU)
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(images, labels, train, val, 3, config(epochs=5, patience=10), CPU, ckpt, key="k", stop_after=2)
    resumed = fit(images, labels, train, val, 3, config(epochs=5, patience=10), CPU, ckpt, key="k")
    assert resumed.resumed_from == 1  # the checkpoint of epoch 2 (0-based 1)
    assert [h["val_loss"] for h in resumed.history] == pytest.approx([h["val_loss"] for h in whole.history], abs=1e-6)
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)
    other = fit(images, labels, train, val, 3, config(epochs=1), CPU, ckpt, key="another run")
    assert other.resumed_from is None  # a checkpoint of other inputs is not resumed


def test_early_stopping_stops_when_val_loss_stops_falling():
    images, labels = squares()
    train, val = split(len(labels))
    result = fit(images, labels, train, val, 3, config(epochs=40, patience=1, lr=0.05), CPU)
    assert result.stopped_early and len(result.history) < 40
    assert len(result.history) == result.best_epoch + 1  # one epoch of patience after the best


def test_a_non_finite_loss_is_a_clear_error():
    images, labels = squares()
    train, val = split(len(labels))
    with pytest.raises(TrainingError, match=r"loss is (nan|inf) at epoch 1.*lower the learning rate"):
        fit(images, labels, train, val, 3, config(optimizer="sgd", lr=1e12, momentum=0.0, nesterov=False), CPU)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_each_optimizer_trains(optimizer):
    images, labels = squares()
    train, val = split(len(labels))
    result = fit(images, labels, train, val, 3, config(optimizer=optimizer, lr=0.01 if optimizer == "sgd" else 0.002, epochs=2), CPU)
    assert result.history[-1]["loss"] < result.history[0]["loss"] * 1.5 and np.isfinite(result.best_val_loss)


def test_unknown_parameters_and_devices_are_named():
    with pytest.raises(ValueError, match="epoch: unknown key; known keys: architecture, augment"):
        TrainConfig.from_params({"epoch": 3})
    with pytest.raises(ValueError, match="optimizer: is 'adamw'; choose one of sgd, adam, rmsprop"):
        TrainConfig.from_params({"optimizer": "adamw"})
    with pytest.raises(ValueError, match="nesterov: true needs momentum > 0"):
        TrainConfig.from_params({"optimizer": "sgd", "momentum": 0})
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="no CUDA device"):
            pick_device("cuda")


def test_a_checkpoint_that_would_run_code_is_refused_without_running(tmp_path):
    import pickle

    from cvpipe.tasks.training import load_checkpoint

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))  # unpickling would create the marker file

    planted = tmp_path / "checkpoints" / "k.pt"
    planted.parent.mkdir()
    torch.save({"key": "k", "epoch": 0, "payload": Payload()}, planted, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    assert load_checkpoint(planted, "k") is None
    assert not marker.exists()


def test_two_processes_with_the_same_seed_train_byte_identical_weights(tmp_path):
    """CPU training is deterministic across processes (what lets a fresh clone's `dvc repro` leave
    dvc.lock unchanged); a different seed gives other weights, so the comparison can fail."""
    import subprocess
    import sys

    from tests.conftest import REPO

    script = """
import sys, hashlib
from tests.cvpipe.classification.test_fit import config, split, CPU
from tests.cvpipe.classification.conftest import squares
from cvpipe.classification.fit import fit
images, labels = squares()
train, val = split(len(labels))
result = fit(images, labels, train, val, 3, config(epochs=3, seed=int(sys.argv[1])), CPU)
print(hashlib.sha256(b"".join(t.numpy().tobytes() for t in result.model.state_dict().values())).hexdigest())
"""
    digests = [subprocess.run([sys.executable, "-c", script, seed], cwd=REPO, capture_output=True, text=True,
                              check=True, timeout=300).stdout.split()[-1] for seed in ("1", "1", "2")]
    assert digests[0] == digests[1] != digests[2]


def test_littlevgg_trains_on_17_images_in_batches_of_16():
    """A last batch of one image would fail LittleVGG's BatchNorm1d in train mode: it is left out of the epoch."""
    images, labels = squares(n_per_class=8)
    train, val = np.arange(17), np.arange(17, 24)
    result = fit(images, labels, train, val, 3, config(architecture="littlevgg", batch_size=16, epochs=2), CPU)
    assert len(result.history) == 2
