"""A few epochs of the LittleVGG classifier and the U-Net, as their tasks train them, in a process of its
own: ``python -m tests.cvpipe.core.cpu_probe [--no-pin] [--detection]`` prints a digest of the weights of each
as JSON (``--detection``: of one epoch of YOLO instead).
Run by tests/cvpipe/core/test_cpu.py under narrowed instruction sets (the controls are read per process)."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path


def digest(model) -> str:
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def detector(tmp: Path) -> str:
    """One epoch of YOLO (ultralytics, with its OpenCV augmentation) on the converted VOC sample, as the task trains it."""
    from cvpipe.detection.task import DetectionTask
    from cvpipe.sources.samples import generate
    from cvpipe.tasks import Compute
    from stages import convert

    root = generate("voc", tmp / "raw")
    convert.run("voc-yolo", tmp / "yolo", root / "annotations", root / "images", val_fraction=0.25)
    task = DetectionTask()
    config = task.train_config({"model": "yolov8n.yaml", "epochs": 1, "imgsz": 96, "batch": 8, "seed": 0})
    task.train(tmp / "yolo", tmp / "model", config, Compute("cpu", 2, tmp / "cache"))
    return hashlib.sha256((tmp / "model" / "model.pt").read_bytes()).hexdigest()


def main(argv: list[str]) -> None:
    from cvpipe.core.cpu import pin_kernels

    pin_kernels("--no-pin" not in argv)  # what the stages do at their entry point, before any tensor work
    import torch

    if "--detection" in argv:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "detector": detector(Path(tmp))}))
        return

    from cvpipe.classification.data import AugmentConfig
    from cvpipe.classification.fit import TrainConfig
    from cvpipe.classification.fit import fit as fit_classifier
    from cvpipe.segmentation.fit import SegmentationConfig
    from cvpipe.segmentation.fit import fit as fit_unet
    from tests.cvpipe.classification.conftest import squares
    from tests.cvpipe.segmentation.test_fit import SMALL, blobs

    torch.set_num_threads(2)
    cpu = torch.device("cpu")
    images, labels = squares()
    idx = list(range(len(labels)))
    train, val = [i for i in idx if i % 4], [i for i in idx if not i % 4]
    config = TrainConfig(image_size=16, epochs=2, batch_size=8, lr=0.005, seed=1,
                         augment=AugmentConfig(width_shift=0.05, horizontal_flip=True))
    import numpy as np

    classifier = fit_classifier(images, labels, np.array(train), np.array(val), 3, config, cpu).model
    unet = fit_unet(blobs(0), blobs(1, n=2), SegmentationConfig.from_params(SMALL | {"epochs": 2}), cpu).model
    print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "classifier": digest(classifier),
                      "unet": digest(unet)}))


if __name__ == "__main__":
    main(sys.argv[1:])
