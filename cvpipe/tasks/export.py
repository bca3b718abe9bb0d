"""Export a registered model's network outside Python's MLflow: ONNX (``torch.onnx``, run by onnxruntime and
most serving runtimes) or TorchScript (``torch.jit``, run by libtorch without Python). Task-independent: each
task wraps its network so that the exported graph takes pixels and gives what its pyfunc computes before
post-processing (class probabilities, per-pixel probabilities), and states the rest in ``export.json``."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript"}
INPUT, OUTPUT = "pixels", "probabilities"
OPSET = 18  # torch.onnx's default in this pin; onnxruntime 1.32 runs up to 23
QUIET = ("onnxscript", "onnx_ir", "torch.onnx")


def export_module(module: Any, example: Any, fmt: str, out: Path, dynamic: dict[int, Any]) -> Path:
    """Write ``module`` (in eval mode, on the CPU) to ``out/model.<suffix>`` as ``fmt``, traced on ``example``;
    ``dynamic``: the input's axes that may vary (axis -> ``torch.export.Dim`` or a multiple of one). The file's
    path is returned."""
    import torch

    module = module.eval().cpu()
    path = out / f"model{SUFFIX[fmt]}"
    with torch.no_grad(), warnings.catch_warnings(), _quiet(QUIET):
        warnings.simplefilter("ignore")  # tracer and exporter notes on constants a user cannot act on
        if fmt == "onnx":
            program = torch.onnx.export(module, (example,), dynamic_shapes={INPUT: dynamic}, input_names=[INPUT],
                                        output_names=[OUTPUT], opset_version=OPSET, dynamo=True, external_data=False,
                                        verbose=False)
            program.save(str(path), external_data=False)
        else:
            torch.jit.trace(module, example, check_trace=False).save(str(path))
    return path


@contextmanager
def _quiet(names: tuple[str, ...]) -> Iterator[None]:
    """Loggers ``names`` at WARNING for the block (the ONNX optimizer reports every pass it applies at INFO)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def graph_input(shape: list[int | str], channels: str = "RGB") -> dict[str, Any]:
    """How the exported graph takes images: ``shape`` (``batch``, ``height`` and ``width`` named where they vary)."""
    return {"name": INPUT, "dtype": "float32", "layout": "NCHW", "channels": channels, "range": [0, 255], "shape": shape}
