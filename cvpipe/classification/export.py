"""A registered classifier as ONNX or TorchScript: pixels in (the size it was trained at), class probabilities
out, exactly what its pyfunc computes before naming the most probable class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from cvpipe.classification.data import MEAN, STD, to_float
from cvpipe.tasks.export import OUTPUT, export_module, graph_input


class Probabilities(nn.Module):
    """The network with the pyfunc's normalisation before it and softmax after it."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, pixels):
        import torch

        return torch.softmax(self.network(to_float(pixels)).float(), 1)


def export(model: Any, fmt: str, out: Path) -> dict[str, Any]:
    """Write the network of ``model`` (a loaded :class:`~cvpipe.classification.pyfunc.ImageClassifier`) to ``out``;
    return what a runtime needs to feed it and read it."""
    import torch

    size, classes = int(model.meta["image_size"]), list(model.meta["classes"])
    example = torch.full((2, 3, size, size), 128.0)
    path = export_module(Probabilities(model.model), example, fmt, out, {0: torch.export.Dim("batch", min=1, max=4096)})
    return {
        "file": path.name,
        "input": graph_input(["batch", 3, size, size]),
        "preprocess": f"decode to RGB, resize to {size} x {size} (bilinear, aspect ratio not kept), float32 in 0-255, NCHW",
        "normalisation": {"in_graph": True, "scale": 1 / 255, "mean": list(MEAN), "std": list(STD)},
        "output": {"name": OUTPUT, "shape": ["batch", len(classes)], "meaning": "softmax over classes, in the order of classes"},
        "classes": classes,
    }
