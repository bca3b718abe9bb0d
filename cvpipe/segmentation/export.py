"""A registered U-Net as ONNX or TorchScript: pixels in, per-pixel probabilities out (what its pyfunc computes
before thresholding them and splitting touching nuclei into instances, which ``export.json`` states)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from cvpipe.segmentation.fit import IMAGENET_MEAN, IMAGENET_STD, normalise, to_float
from cvpipe.segmentation.models import multiple
from cvpipe.tasks.export import OUTPUT, export_module, graph_input


class Probabilities(nn.Module):
    """The network with the pyfunc's scaling (and an smp encoder's normalisation) before it and sigmoid after it."""

    def __init__(self, network: nn.Module, spec: dict) -> None:
        super().__init__()
        self.network, self.spec = network, spec

    def forward(self, pixels):
        import torch

        return torch.sigmoid(self.network(normalise(to_float(pixels, self.spec), self.spec)).float())


def export(model: Any, fmt: str, out: Path) -> dict[str, Any]:
    """Write the network of ``model`` (a loaded :class:`~cvpipe.segmentation.pyfunc.Segmenter`) to ``out``; return
    what a runtime needs to feed it and read it."""
    import torch

    spec, settings = model.spec, model.settings
    m, size = multiple(spec), int(settings["input_size"])
    dynamic: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=1024)}
    if settings["input_mode"] == "resize":
        shape, example = ["batch", 3, size, size], torch.full((1, 3, size, size), 128.0)
        preprocess = f"decode to RGB, resize to {size} x {size} (bilinear); resize the output back to the image's size"
    else:
        dynamic |= {2: m * torch.export.Dim("h_blocks", min=1, max=512), 3: m * torch.export.Dim("w_blocks", min=1, max=512)}
        shape, example = ["batch", 3, f"height (a multiple of {m})", f"width (a multiple of {m})"], torch.full((1, 3, 2 * m, 3 * m), 128.0)
        preprocess = f"decode to RGB, pad bottom and right with zeros to multiples of {m}; crop the output back to the image"
    path = export_module(Probabilities(model.model, spec), example, fmt, out, dynamic)
    normalisation: dict[str, Any] = {"in_graph": True, "scale": 1 / 255}
    if spec.get("input_scaling", "unit") == "min_max":
        normalisation = {"in_graph": True, "min_max": "each image's channels stretched from their minimum to their maximum "
                                                      "(pad by repeating the image, not with zeros, or the minimum moves)"}
    if spec["architecture"] == "smp_unet":
        normalisation |= {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    channels = ["nucleus"] + (["border"] if spec["out_channels"] == 2 else [])
    return {
        "file": path.name,
        "input": graph_input(shape),
        "preprocess": preprocess + ", float32 in 0-255, NCHW",
        "normalisation": normalisation,
        "output": {"name": OUTPUT, "shape": ["batch", len(channels), "height", "width"], "channels": channels,
                   "meaning": "per-pixel sigmoid probabilities"},
        "postprocess": {"instances": settings["instances"],
                        "how": "threshold the nucleus channel, split touching nuclei by watershed (cvpipe.segmentation.instances)"},
        "classes": ["nucleus"],
    }
