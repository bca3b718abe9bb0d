"""The MLflow model of a nuclei segmenter: ``mlflow.pyfunc.load_model(uri).predict(images)`` -> nuclei per image.

Input: a DataFrame with a column ``image`` holding encoded image files (PNG, JPEG..., any size and
mode, read to RGB as training reads them: :func:`cvpipe.segmentation.data.read_rgb`), one per row:
``pd.DataFrame({"image": [Path("x.png").read_bytes()]})``, or :func:`cvpipe.data.model_input.images_frame`
of paths, bytes or uint8 pixel arrays. Files and not a pixel tensor so that the same model answers
``mlflow models serve`` requests with base64 images in JSON (:mod:`cvpipe.data.model_input` says why); a row
that is not a decodable image is an error naming its index.
Output: a DataFrame with one row per image: ``count`` (nuclei found), ``height``, ``width`` and
``encoded_pixels``, one DSB2018 run-length encoding per nucleus (``start length`` pairs, 1-indexed,
down the columns: :func:`cvpipe.data.rle.dsb_decode` turns one into a mask), the nuclei never overlapping;
with ``params={"output": "labels"}`` also ``labels``, the H x W label image (0 background, 1..count).
Params: ``threshold``, ``min_distance``, ``min_area``, ``smooth`` (default: what was evaluated, in settings.json).
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

from cvpipe.data.model_input import INPUTS, decode_images

OUTPUTS = Schema([ColSpec("long", name="count"), ColSpec("long", name="height"), ColSpec("long", name="width"),
                  ColSpec(Array("string"), name="encoded_pixels")])


def signature(instances: dict) -> ModelSignature:
    """Inputs, outputs, and params whose defaults are the instance settings the model was evaluated with."""
    params = [ParamSpec("threshold", "double", float(instances["threshold"])),
              ParamSpec("min_distance", "long", int(instances["min_distance"])),
              ParamSpec("min_area", "long", int(instances["min_area"])),
              ParamSpec("smooth", "double", float(instances.get("smooth", 0.0))),
              ParamSpec("output", "string", "rle")]
    return ModelSignature(inputs=INPUTS, outputs=OUTPUTS, params=ParamSchema(params))


class Segmenter(mlflow.pyfunc.PythonModel):
    """Loads ``model.pt`` (:func:`cvpipe.segmentation.models.save_trained`) and ``settings.json``."""

    def load_context(self, context) -> None:
        import json

        from cvpipe.segmentation.models import load_trained
        from cvpipe.tasks.training import pick_device

        self.device = pick_device("auto")
        self.model, self.spec = load_trained(Path(context.artifacts["model"]), self.device)
        with open(context.artifacts["settings"], encoding="utf-8") as f:
            self.settings = json.load(f)

    def labels(self, images, params: dict | None = None) -> list[np.ndarray]:
        """The label image of each uint8 H x W x 3 RGB image."""
        from cvpipe.segmentation.fit import predict_probs
        from cvpipe.segmentation.instances import InstanceConfig, instances

        chosen = {k: v for k, v in (params or {}).items() if k in ("threshold", "min_distance", "min_area", "smooth")}
        config = InstanceConfig(**(self.settings["instances"] | chosen))
        return [instances(predict_probs(self.model, image, self.spec, self.settings["input_mode"], self.settings["input_size"],
                                        self.device), config) for image in images]

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from cvpipe.data.rle import dsb_encode

        rows = []
        for labels in self.labels(decode_images(model_input, rgb), params):
            row = {"count": int(labels.max()), "height": labels.shape[0], "width": labels.shape[1],
                   "encoded_pixels": [dsb_encode(labels == k) for k in range(1, int(labels.max()) + 1)]}
            if (params or {}).get("output") == "labels":
                row["labels"] = labels
            rows.append(row)
        return pd.DataFrame(rows)


def rgb(image) -> np.ndarray:
    """An opened image as uint8 H x W x 3 RGB, as :func:`cvpipe.segmentation.data.read_rgb` reads a file:
    16/32-bit and float grey stretched to 8 bits, not clipped."""
    if image.mode.startswith(("I", "F")):
        grey = np.asarray(image, dtype=np.float64)
        low, span = grey.min(), max(grey.max() - grey.min(), 1e-12)
        return np.repeat(np.round(255 * (grey - low) / span).astype(np.uint8)[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
