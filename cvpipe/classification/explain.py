"""What a classifier sees: Grad-CAM heat maps and the first convolution's filters.

Grad-CAM (Selvaraju et al., 2017): the feature map just before global pooling, weighted channel by
channel with the mean gradient of one class's logit, summed, rectified and scaled to [0, 1]: where
in the image the evidence for that class lies. Written here (about thirty lines: one forward hook,
one ``torch.autograd.grad``) rather than taken from the ``grad-cam`` or ``captum`` packages, which would
bring a dependency (and, for ``grad-cam``, OpenCV) for what these three architectures need.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cvpipe.core.plots import image_grid, note_png, png

ALPHA = 0.45  # the heat map's share of an overlaid pixel


def cam_layer(model: nn.Module) -> nn.Module:
    """The module whose output Grad-CAM reads: the last feature map before global pooling (LittleVGG's last
    ReLU, resnet18's ``layer4``, mobilenet_v3_small's ``features``)."""
    from cvpipe.classification.models import LittleVGG

    if isinstance(model, LittleVGG):
        return [m for m in model.features if isinstance(m, nn.ReLU)][-1]  # before the last pooling: twice its resolution
    return model.layer4 if hasattr(model, "layer4") else model.features


def gradcam(model: nn.Module, x: torch.Tensor, classes: Sequence[int], size: tuple[int, int] | None = None) -> np.ndarray:
    """Heat maps (N x H x W, float32 in [0, 1]; H x W is ``size``, default the input's) of ``classes[i]`` for each
    image of the normalised batch ``x``; ``model`` in eval mode. An image with no positive evidence gets zeros."""
    features: list[torch.Tensor] = []
    handle = cam_layer(model).register_forward_hook(lambda _module, _inputs, output: features.append(output))
    try:
        with torch.enable_grad():
            logits = model(x.detach().requires_grad_(True))  # frozen weights too: the input carries the graph
            chosen = logits.gather(1, torch.as_tensor(list(classes), device=x.device).view(-1, 1)).sum()
            (grads,) = torch.autograd.grad(chosen, features[0])  # each logit depends on its own image only (eval mode)
    finally:
        handle.remove()
    weights = grads.mean((2, 3), keepdim=True)
    cam = torch.relu((weights * features[0].detach()).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=size or tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(1).values.view(-1, 1, 1)
    return torch.where(peak > 0, cam / peak.clamp_min(1e-12), torch.zeros_like(cam)).float().cpu().numpy()


def resized_cam(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A heat map scaled (bilinear) to ``shape`` (H, W), as :func:`gradcam` scales its own."""
    grown = F.interpolate(torch.from_numpy(cam)[None, None], size=shape, mode="bilinear", align_corners=False)
    return grown[0, 0].clamp(0, 1).numpy()


def overlay(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """``image`` (uint8 H x W x 3) with the heat map ``cam`` (H x W in [0, 1]) over it in the ``jet`` colours."""
    from matplotlib import colormaps

    heat = colormaps["jet"](np.clip(cam, 0.0, 1.0))[..., :3] * 255.0
    return np.round(image.astype(np.float64) * (1 - ALPHA) + heat * ALPHA).astype(np.uint8)


class Explained(NamedTuple):
    """One image of ``gradcam.png``: the picture, the heat maps of the predicted class and of its rival (the true class
    of a mistake, the runner-up of a right answer), and the caption."""

    image: np.ndarray  # uint8 H x W x 3
    cam_predicted: np.ndarray  # H x W in [0, 1]
    cam_rival: np.ndarray
    predicted: str
    rival: str
    caption: str
    wrong: bool


def hardest(probabilities: np.ndarray, truth: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions, rival classes) of the images ``gradcam.png`` explains: the most confident mistakes first, then the
    least sure right answers, ``limit`` in all. A mistake's rival is its true class, a right answer's the runner-up."""
    predicted, confidence = probabilities.argmax(1), probabilities.max(1)
    wrong = np.flatnonzero(predicted != truth)
    right = np.flatnonzero(predicted == truth)
    chosen = np.concatenate([wrong[np.argsort(-confidence[wrong], kind="stable")],
                             right[np.argsort(confidence[right], kind="stable")]])[:limit]
    runner_up = np.argsort(-probabilities, axis=1, kind="stable")[:, 1] if probabilities.shape[1] > 1 else predicted
    return chosen, np.where(predicted[chosen] != truth[chosen], truth[chosen], runner_up[chosen])


def gradcam_png(entries: list[Explained], title: str, per_row: int = 2) -> bytes:
    """Each entry as three panels: the image captioned (red for a mistake), the heat map of the predicted class, that
    of its rival."""
    if not entries:
        return note_png(f"{title}\nno image to explain")
    fig, axes = image_grid(3 * len(entries), 3 * per_row, (1.9, 2.2))
    for k, e in enumerate(entries):
        row, col = divmod(3 * k, 3 * per_row)
        panels = ((e.image, e.caption, "firebrick" if e.wrong else "darkgreen"),
                  (overlay(e.image, e.cam_predicted), f"where it saw\n{e.predicted}", "black"),
                  (overlay(e.image, e.cam_rival), f"where it saw\n{e.rival}", "dimgray"))
        for offset, (picture, caption, colour) in enumerate(panels):
            ax = axes[row, col + offset]
            ax.imshow(picture)
            ax.set_title(caption, fontsize=7, color=colour)
    fig.suptitle(title)
    fig.tight_layout()
    return png(fig)


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def filters_png(model: nn.Module, title: str, columns: int = 8) -> bytes:
    """The first convolution's filters as small RGB pictures, each scaled to its own range (as in
    "Visualizing what convnets learn"): colour and orientation detectors show as such."""
    weights = first_conv(model).weight.detach().float().cpu().numpy()  # out x 3 x k x k
    fig, axes = image_grid(len(weights), columns, (0.9, 0.9))
    for ax, w in zip(axes.flat, weights, strict=False):
        low, high = w.min(), w.max()
        ax.imshow(((w - low) / (high - low) if high > low else np.zeros_like(w)).transpose(1, 2, 0), interpolation="nearest")
    kernel = weights.shape[-1]
    fig.suptitle(f"{title}: first convolution, {len(weights)} filters of {kernel}x{kernel}", fontsize=9)
    fig.tight_layout()
    return png(fig)
