"""The MLflow model of a classifier: ``mlflow.pyfunc.load_model(uri).predict(images)`` -> class names.

Input: a uint8 array of RGB images, N x H x W x 3, at any size (each is resized to the model's input
size as in training), or a list of such arrays of different sizes. Output: one class name per image.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import ColSpec, Schema, TensorSpec

SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))]),
    outputs=Schema([ColSpec("string", name="label")]),
)


class ImageClassifier(mlflow.pyfunc.PythonModel):
    """Loads ``model.pt`` (see :func:`cvpipe.classification.models.save_trained`) from the model's artifacts."""

    def load_context(self, context) -> None:
        from cvpipe.classification.models import load_trained
        from cvpipe.training import pick_device

        self.device = pick_device("auto")
        self.model, self.meta = load_trained(context.artifacts["model"], self.device)

    def probabilities(self, images) -> np.ndarray:
        import torch
        from PIL import Image

        from cvpipe.classification.data import to_float

        size = self.meta["image_size"]
        batch = []
        for raw in images:
            image = np.asarray(raw, dtype=np.uint8)
            if image.shape[:2] != (size, size):
                image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
            batch.append(image)
        if not batch:
            return np.zeros((0, len(self.meta["classes"])), dtype=np.float32)
        x = torch.from_numpy(np.stack(batch).transpose(0, 3, 1, 2).copy()).to(self.device)
        with torch.no_grad(), torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            return torch.softmax(self.model(to_float(x)).float(), 1).cpu().numpy()

    def predict(self, context, model_input, params=None) -> list[str]:
        names = self.meta["classes"]
        return [names[k] for k in self.probabilities(model_input).argmax(1)]
