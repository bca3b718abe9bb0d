"""The MLflow model of a detector: ``mlflow.pyfunc.load_model(uri).predict(images)`` -> boxes per image.

Input: a DataFrame with a column ``image`` holding encoded image files (PNG, JPEG..., any size), one
per row: ``pd.DataFrame({"image": [Path("x.jpg").read_bytes()]})``, or
:func:`cvpipe.data.model_input.images_frame` of paths, bytes or uint8 pixel arrays. Files and not a pixel
tensor so that the same model answers ``mlflow models serve`` requests with base64 images in JSON
(:mod:`cvpipe.data.model_input` says why); a row that is not a decodable image is an error naming its index.
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
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

from cvpipe.data.model_input import INPUTS, decode_images

DEFAULTS = {"conf": 0.25, "iou": 0.7, "max_det": 100}
SIGNATURE = ModelSignature(
    inputs=INPUTS,
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
        from cvpipe.tasks.training import pick_device

        load()  # offline: nothing fetched or installed while predicting
        from ultralytics import YOLO

        self.device = pick_device("auto")
        self.model = YOLO(context.artifacts["model"], task="detect")
        with open(context.artifacts["classes"], encoding="utf-8") as f:
            self.names = [c["name"] for c in json.load(f)["classes"]]
        self.imgsz = int(self.model.model.args.get("imgsz", 640))

    def detect(self, images, conf: float, iou: float, max_det: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(boxes, class indices, scores) of each uint8 H x W x 3 RGB image."""
        out = []
        for raw in images:
            image = np.ascontiguousarray(np.asarray(raw, dtype=np.uint8)[..., ::-1])  # ultralytics takes arrays as BGR
            r = self.model.predict(image, imgsz=self.imgsz, conf=conf, iou=iou, max_det=max_det, device=str(self.device),
                                   verbose=False)[0]
            out.append((r.boxes.xyxy.cpu().numpy().astype(np.float64), r.boxes.cls.cpu().numpy().astype(np.int64),
                        r.boxes.conf.cpu().numpy().astype(np.float64)))
        return out

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        settings = DEFAULTS | (params or {})
        rows = []
        images = decode_images(model_input, lambda image: np.asarray(image.convert("RGB"), dtype=np.uint8))
        for boxes, classes, scores in self.detect(images, float(settings["conf"]), float(settings["iou"]), int(settings["max_det"])):
            # unrounded, as ultralytics gives them: the AP ranks by score (a young network's scores differ in the
            # 6th place) and matches at IoU thresholds that a box rounded to 0.01 px crosses (mAP50-95 0.8823 vs 0.8818)
            rows.append({"boxes": [[float(v) for v in b] for b in boxes], "classes": [self.names[c] for c in classes],
                         "scores": [float(s) for s in scores]})
        return pd.DataFrame(rows, columns=["boxes", "classes", "scores"])

