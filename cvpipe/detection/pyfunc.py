"""The MLflow model of a detector: ``mlflow.pyfunc.load_model(uri).predict(images)`` -> boxes per image.

Input: a uint8 array of RGB images, N x H x W x 3, or a list of such arrays of different sizes.
Output: a DataFrame with one row per image: ``boxes`` (``[x_min, y_min, x_max, y_max]`` in the
image's pixels), ``classes`` (names from the dataset's classes.json) and ``scores``, best first.
Params (``predict(images, params={...})``): ``conf`` (0.25), ``iou`` (non-maximum suppression, 0.7),
``max_det`` (100).
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

DEFAULTS = {"conf": 0.25, "iou": 0.7, "max_det": 100}
SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))]),
    outputs=Schema([ColSpec(Array(Array("double")), name="boxes"), ColSpec(Array("string"), name="classes"),
                    ColSpec(Array("double"), name="scores")]),
    params=ParamSchema([ParamSpec("conf", "double", DEFAULTS["conf"]), ParamSpec("iou", "double", DEFAULTS["iou"]),
                        ParamSpec("max_det", "long", DEFAULTS["max_det"])]),
)


class Detector(mlflow.pyfunc.PythonModel):
    """Loads ``model.pt`` (an ultralytics checkpoint, :func:`cvpipe.detection.ultra.portable_checkpoint`)."""

    def load_context(self, context) -> None:
        import json

        from cvpipe.detection.ultra import load
        from cvpipe.training import pick_device

        load()  # offline: nothing fetched or installed while predicting
        from ultralytics import YOLO

        self.device = pick_device("auto")
        self.model = YOLO(context.artifacts["model"], task="detect")
        with open(context.artifacts["classes"], encoding="utf-8") as f:
            self.names = [c["name"] for c in json.load(f)["classes"]]
        self.imgsz = int(self.model.model.args.get("imgsz", 640))

    def detect(self, images, conf: float, iou: float, max_det: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        out = []
        for raw in images:
            image = np.ascontiguousarray(np.asarray(raw, dtype=np.uint8)[..., ::-1])  # ultralytics takes arrays as BGR
            r = self.model.predict(image, imgsz=self.imgsz, conf=conf, iou=iou, max_det=max_det, device=str(self.device),
                                   verbose=False)[0]
            out.append((r.boxes.xyxy.cpu().numpy().astype(np.float64), r.boxes.cls.cpu().numpy().astype(np.int64),
                        r.boxes.conf.cpu().numpy().astype(np.float64)))
        return out

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        settings = DEFAULTS | (params or {})
        rows = []
        for boxes, classes, scores in self.detect(model_input, float(settings["conf"]), float(settings["iou"]), int(settings["max_det"])):
            rows.append({"boxes": [[round(float(v), 2) for v in b] for b in boxes], "classes": [self.names[c] for c in classes],
                         "scores": [round(float(s), 4) for s in scores]})
        return pd.DataFrame(rows, columns=["boxes", "classes", "scores"])

