"""The MLflow model of a nuclei segmenter: ``mlflow.pyfunc.load_model(uri).predict(images)`` -> nuclei per image.

Input: a uint8 array of RGB images, N x H x W x 3; images of different sizes as a 1-D object array of
H x W x 3 uint8 arrays (grey images as three equal channels). Anything else is a ValueError naming the image.
Output: a DataFrame with one row per image: ``count`` (nuclei found), ``height``, ``width`` and
``encoded_pixels``, one DSB2018 run-length encoding per nucleus (``start length`` pairs, 1-indexed,
down the columns: :func:`cvpipe.rle.dsb_decode` turns one into a mask), the nuclei never overlapping;
with ``params={"output": "labels"}`` also ``labels``, the H x W label image (0 background, 1..count).
Params: ``threshold``, ``min_distance``, ``min_area``, ``smooth`` (default: what was evaluated, in settings.json).
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

SIGNATURE_INPUTS = Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))])
OUTPUTS = Schema([ColSpec("long", name="count"), ColSpec("long", name="height"), ColSpec("long", name="width"),
                  ColSpec(Array("string"), name="encoded_pixels")])


def signature(instances: dict) -> ModelSignature:
    """Inputs, outputs, and params whose defaults are the instance settings the model was evaluated with."""
    params = [ParamSpec("threshold", "double", float(instances["threshold"])),
              ParamSpec("min_distance", "long", int(instances["min_distance"])),
              ParamSpec("min_area", "long", int(instances["min_area"])),
              ParamSpec("smooth", "double", float(instances.get("smooth", 0.0))),
              ParamSpec("output", "string", "rle")]
    return ModelSignature(inputs=SIGNATURE_INPUTS, outputs=OUTPUTS, params=ParamSchema(params))


class Segmenter(mlflow.pyfunc.PythonModel):
    """Loads ``model.pt`` (:func:`cvpipe.segmentation.models.save_trained`) and ``settings.json``."""

    def load_context(self, context) -> None:
        import json

        from cvpipe.segmentation.models import load_trained
        from cvpipe.training import pick_device

        self.device = pick_device("auto")
        self.model, self.spec = load_trained(Path(context.artifacts["model"]), self.device)
        with open(context.artifacts["settings"], encoding="utf-8") as f:
            self.settings = json.load(f)

    def labels(self, images, params: dict | None = None) -> list[np.ndarray]:
        """The label image of each input image."""
        from cvpipe.segmentation.fit import predict_probs
        from cvpipe.segmentation.instances import InstanceConfig, instances

        chosen = {k: v for k, v in (params or {}).items() if k in ("threshold", "min_distance", "min_area", "smooth")}
        config = InstanceConfig(**(self.settings["instances"] | chosen))
        out = []
        for k, raw in enumerate(images):
            image = np.asarray(raw)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"image {k}: expected an H x W x 3 uint8 RGB array, got shape {image.shape} of {image.dtype} "
                                 "(convert grey or RGBA images to RGB, and floats to 0-255 uint8, first)")
            probs = predict_probs(self.model, image, self.spec, self.settings["input_mode"], self.settings["input_size"], self.device)
            out.append(instances(probs, config))
        return out

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        from cvpipe.rle import dsb_encode

        rows = []
        for labels in self.labels(model_input, params):
            row = {"count": int(labels.max()), "height": labels.shape[0], "width": labels.shape[1],
                   "encoded_pixels": [dsb_encode(labels == k) for k in range(1, int(labels.max()) + 1)]}
            if (params or {}).get("output") == "labels":
                row["labels"] = labels
            rows.append(row)
        return pd.DataFrame(rows)
