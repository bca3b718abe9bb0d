"""The MLflow model of a classifier: ``mlflow.pyfunc.load_model(uri).predict(images)`` -> class names.

Input: a DataFrame with a column ``image`` holding encoded image files (PNG, JPEG..., any size; each is
decoded to RGB and resized to the model's input size as in training), one per row:
``pd.DataFrame({"image": [Path("x.jpg").read_bytes()]})``, or :func:`cvpipe.data.model_input.images_frame`
of paths, bytes or uint8 pixel arrays. Files and not a pixel tensor so that the same model answers
``mlflow models serve`` requests with base64 images in JSON (:mod:`cvpipe.data.model_input` says why).
Output: one class name per image. A row that is not a decodable image is an error naming its index.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import ColSpec, Schema

from cvpipe.data.model_input import INPUTS, decode_images

SIGNATURE = ModelSignature(inputs=INPUTS, outputs=Schema([ColSpec("string", name="label")]))


class ImageClassifier(mlflow.pyfunc.PythonModel):
    """Loads ``model.pt`` (see :func:`cvpipe.classification.models.save_trained`) from the model's artifacts."""

    def load_context(self, context) -> None:
        from cvpipe.classification.models import load_trained
        from cvpipe.tasks.training import pick_device

        self.device = pick_device("auto")
        self.model, self.meta = load_trained(context.artifacts["model"], self.device)

    def resized(self, image) -> np.ndarray:
        """One opened image as the model's input: RGB, squashed to its size (as ``decode_resized`` reads files)."""
        from PIL import Image

        size = self.meta["image_size"]
        return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        """Class probabilities of uint8 RGB images already at the model's input size."""
        import torch

        from cvpipe.classification.data import to_float

        if not images:
            return np.zeros((0, len(self.meta["classes"])), dtype=np.float32)
        x = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy()).to(self.device)
        with torch.no_grad(), torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            return torch.softmax(self.model(to_float(x)).float(), 1).cpu().numpy()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        names = self.meta["classes"]
        return [names[k] for k in self.probabilities(list(decode_images(model_input, self.resized))).argmax(1)]
