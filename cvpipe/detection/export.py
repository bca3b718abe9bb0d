"""A registered detector as ONNX or TorchScript, through ultralytics' own exporter (the graph its runtimes and
``YOLO("model.onnx")`` read): letterboxed pixels in, raw candidate boxes out; non-maximum suppression with
the settings ``export.json`` states runs after it, as in ``YOLO(...).predict``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from cvpipe.detection.pyfunc import DEFAULTS
from cvpipe.tasks.export import SUFFIX


def export(model: Any, fmt: str, out: Path) -> dict[str, Any]:
    """Write the network of ``model`` (a loaded :class:`~cvpipe.detection.pyfunc.Detector`) to ``out``; return what
    a runtime needs to feed it and read it."""
    from ultralytics import YOLO

    size = int(model.imgsz)
    with tempfile.TemporaryDirectory(prefix="cvpipe-export-") as tmp:
        weights = Path(tmp) / "model.pt"  # ultralytics writes beside its weights: a copy, not the registry's download
        shutil.copyfile(model.model.ckpt_path, weights)
        # simplify=False: onnxslim is not in the pin and ultralytics would try to install it
        options = {"simplify": False} if fmt == "onnx" else {}
        written = Path(YOLO(str(weights), task="detect").export(format=fmt, imgsz=size, dynamic=False, device="cpu",
                                                                 verbose=False, **options))
        path = out / f"model{SUFFIX[fmt]}"
        shutil.move(written, path)
    return {
        "file": path.name,
        "input": {"name": "images", "dtype": "float32", "layout": "NCHW", "channels": "RGB", "range": [0, 1],
                  "shape": [1, 3, size, size]},
        "preprocess": f"decode to RGB, letterbox to {size} x {size} (scaled to fit, padded with 114 grey), float32 in 0-1",
        "output": {"name": "output0", "shape": [1, 4 + len(model.names), "candidates"],
                   "meaning": "per candidate: box centre x, y, width, height in input pixels, then one score per class"},
        "postprocess": {"nms": {"conf": DEFAULTS["conf"], "iou": DEFAULTS["iou"], "max_det": DEFAULTS["max_det"]},
                        "how": "keep candidates above conf, class-wise non-maximum suppression at iou, undo the letterbox"},
        "classes": list(model.names),
        "runs_with": f"ultralytics: YOLO('{path.name}', task='detect').predict(image, imgsz={size})",
    }
