"""A registered classifier on new images: the class, its probability and the top k, each image captioned."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from cvpipe.core.annotate import caption
from cvpipe.tasks import Predicted

COLUMNS = ("class", "score", "top_k")
TOP_K = 3


def predict(model: Any, images: list[np.ndarray]) -> list[Predicted]:
    """Batched: one forward pass for the batch (``model``: a loaded :class:`~cvpipe.classification.pyfunc.ImageClassifier`,
    whose ``resized`` and ``probabilities`` its ``predict`` uses, so the class is the one it answers)."""
    names = model.meta["classes"]
    probabilities = model.probabilities([model.resized(Image.fromarray(image)) for image in images])
    out = []
    for image, p in zip(images, probabilities, strict=True):
        order = np.argsort(-p, kind="stable")[: min(TOP_K, len(names))]
        best = int(order[0])
        top = ";".join(f"{names[k]}:{p[k]:.4f}" for k in order)
        text = f"{names[best]} {p[best]:.2f}"
        out.append(Predicted([{"class": names[best], "score": round(float(p[best]), 6), "top_k": top}], caption(image, text), text))
    return out


def explain(model: Any, images: list[np.ndarray]) -> list[np.ndarray]:
    """Each image with the Grad-CAM heat map (:func:`cvpipe.classification.explain.gradcam`) of the class ``model``
    predicts for it over it, captioned with that class and its probability."""
    import torch

    from cvpipe.classification.data import to_float
    from cvpipe.classification.explain import gradcam, overlay, resized_cam

    names = model.meta["classes"]
    inputs = [model.resized(Image.fromarray(image)) for image in images]
    probabilities = model.probabilities(inputs)
    best = probabilities.argmax(1)
    x = to_float(torch.from_numpy(np.stack(inputs).transpose(0, 3, 1, 2).copy()).to(model.device))
    cams = gradcam(model.model, x, best.tolist())
    return [caption(overlay(image, resized_cam(cam, image.shape[:2])), f"{names[k]} {p[k]:.2f} (Grad-CAM)")
            for image, cam, k, p in zip(images, cams, best, probabilities, strict=True)]
