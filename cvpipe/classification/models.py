"""Classifiers chosen by name in params.yaml: LittleVGG, torchvision's resnet18 and mobilenet_v3_small.

Pretrained weights come only from a local file (``weights: path/to/resnet18.pth``); nothing is
downloaded. ``freeze: true`` trains the new head only (transfer learning).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

from cvpipe.core.errors import DataError, ParamsError

ARCHITECTURES = ("littlevgg", "resnet18", "mobilenet_v3_small")


class LittleVGG(nn.Module):
    """The small VGG-style network of the Simpsons project: blocks of two 3x3 conv + BN + ReLU, then pool.

    Global average pooling before the dense head makes it independent of the input size.
    """

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (32, 64, 128), dense: int = 256, dropout: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for width in widths:
            for _ in range(2):
                layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                c_in = width
            layers += [nn.MaxPool2d(2), nn.Dropout(dropout / 2)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in, dense), nn.BatchNorm1d(dense), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(dense, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))


def build_model(architecture: str, num_classes: int, weights: str | Path | None = None, freeze: bool = False) -> nn.Module:
    """A model with a ``num_classes`` head; ``weights`` is a local state dict of the ImageNet model."""
    if architecture == "littlevgg":
        if weights is not None or freeze:
            raise ParamsError("weights", "littlevgg has no pretrained weights; set weights: null and freeze: false")
        return LittleVGG(num_classes)
    if architecture not in ARCHITECTURES:
        raise ParamsError("architecture", f"is {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    model = getattr(tvm, architecture)(weights=None)  # never a download: weights only from a file
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise DataError(path, "pretrained weights file not found (weights are never downloaded)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise DataError(path, f"not {architecture} ImageNet weights: {str(exc).splitlines()[0]}") from exc
    if freeze:
        for p in model.parameters():
            p.requires_grad = False
    head = _replace_head(model, architecture, num_classes)
    for p in head.parameters():
        p.requires_grad = True
    return model


def _replace_head(model: nn.Module, architecture: str, num_classes: int) -> nn.Module:
    if architecture == "resnet18":
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        return model.fc
    last = model.classifier[-1]
    model.classifier[-1] = nn.Linear(last.in_features, num_classes)
    return model.classifier[-1]


def save_trained(path: Path, model: nn.Module, architecture: str, class_names: list[str], image_size: int) -> None:
    """The trained weights with what is needed to rebuild and feed the model (written atomically)."""
    import io

    from cvpipe.core.io import write_bytes

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()  # not the temporary file: torch names the archive after the file, and the bytes would differ
    torch.save({"architecture": architecture, "classes": class_names, "image_size": image_size, "state_dict": state}, buffer)
    write_bytes(path, buffer.getvalue())


def load_trained(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """(model in eval mode, its metadata) from :func:`save_trained`'s file."""
    if not Path(path).is_file():
        raise DataError(path, "trained model not found (run the train stage first)")
    meta = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(meta["architecture"], len(meta["classes"]))
    model.load_state_dict(meta.pop("state_dict"))
    return model.to(device).eval(), meta
