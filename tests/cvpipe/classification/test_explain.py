"""Grad-CAM looks where the class is: a LittleVGG trained on images whose class is only the colour of one
square, placed anywhere on noise, peaks on that square."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from cvpipe.classification.data import to_float
from cvpipe.classification.explain import Explained, cam_layer, filters_png, gradcam, gradcam_png, hardest, overlay
from cvpipe.classification.models import build_model

SIZE, SQUARE = 32, 10
COLOURS = ((230, 40, 40), (40, 60, 230))  # the class is the square's colour; the noise carries both colours


def squares(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 N x 3 x SIZE x SIZE images, labels, and each square's top-left corner (row, column)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, SIZE, SIZE, 3))
    labels = rng.integers(0, 2, n)
    corners = rng.integers(0, SIZE - SQUARE + 1, (n, 2))
    for image, label, (y, x) in zip(images, labels, corners, strict=True):
        image[y:y + SQUARE, x:x + SQUARE] = COLOURS[label]
    return images.astype(np.uint8).transpose(0, 3, 1, 2), labels, corners


@pytest.fixture(scope="module")
def trained() -> torch.nn.Module:
    torch.manual_seed(0)
    images, labels, _ = squares(384, seed=1)
    model = build_model("littlevgg", 2)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.003)
    x_all, y_all = to_float(torch.from_numpy(images)), torch.from_numpy(labels)
    for _ in range(6):
        model.train()
        for start in range(0, len(x_all), 32):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x_all[start:start + 32]), y_all[start:start + 32]).backward()
            optimiser.step()
    return model.eval()


def test_the_heat_map_of_the_true_class_peaks_on_the_square_that_carries_it(trained):
    images, labels, corners = squares(64, seed=2)
    x = to_float(torch.from_numpy(images))
    with torch.no_grad():
        assert (trained(x).argmax(1).numpy() == labels).mean() >= 0.95  # it learnt the colour, not the noise
    cams = gradcam(trained, x, labels.tolist())
    assert cams.shape == (64, SIZE, SIZE) and cams.dtype == np.float32 and cams.min() >= 0 and cams.max() <= 1
    inside = []
    for cam, (y, x0) in zip(cams, corners, strict=True):
        peak_y, peak_x = np.unravel_index(np.argmax(cam), cam.shape)
        inside.append(y - 2 <= peak_y < y + SQUARE + 2 and x0 - 2 <= peak_x < x0 + SQUARE + 2)  # a CAM cell is 4 px
    assert np.mean(inside) >= 0.9, f"the map peaked on the square in {np.mean(inside):.0%} of the images"
    # more of the map's mass on the square than the square's share of the image
    on_square = [cam[y:y + SQUARE, x0:x0 + SQUARE].sum() / cam.sum() for cam, (y, x0) in zip(cams, corners, strict=True)]
    assert np.median(on_square) > 2 * (SQUARE * SQUARE) / (SIZE * SIZE)


def test_an_untrained_model_does_not_find_the_squares():
    """The localisation test can fail: the same measure on an untrained model misses most squares."""
    torch.manual_seed(0)
    model = build_model("littlevgg", 2).eval()
    images, labels, corners = squares(64, seed=2)
    cams = gradcam(model, to_float(torch.from_numpy(images)), labels.tolist())
    hits = [y - 2 <= np.unravel_index(np.argmax(c), c.shape)[0] < y + SQUARE + 2
            and x - 2 <= np.unravel_index(np.argmax(c), c.shape)[1] < x + SQUARE + 2 for c, (y, x) in zip(cams, corners, strict=True)]
    assert np.mean(hits) < 0.6


@pytest.mark.parametrize("architecture", ["littlevgg", "resnet18", "mobilenet_v3_small"])
def test_every_architecture_has_a_map_at_the_asked_size_and_leaves_the_model_as_it_was(architecture):
    model = build_model(architecture, 3).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
    cams = gradcam(model, x, [0, 2], size=(96, 80))
    assert cams.shape == (2, 96, 80) and np.isfinite(cams).all()
    assert not cam_layer(model)._forward_hooks  # the hook is removed
    assert all(p.grad is None for p in model.parameters())  # no gradient left on the weights
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_overlay_and_pictures():
    image = np.full((8, 8, 3), 100, np.uint8)
    cam = np.zeros((8, 8), np.float32)
    cam[0, 0] = 1.0
    out = overlay(image, cam)
    assert out.dtype == np.uint8 and out.shape == image.shape and not np.array_equal(out[0, 0], out[7, 7])
    model = build_model("littlevgg", 2)
    picture = Image.open(io.BytesIO(filters_png(model, "t")))
    assert picture.width > 400 and picture.height > 200  # 32 filters in rows of 8
    assert gradcam_png([], "t")[:4] == b"\x89PNG"  # a note when there is no mistake
    entry = Explained(image, cam, cam, "b", "a", "a\n-> b (0.90)", True)
    assert gradcam_png([entry] * 3, "t") == gradcam_png([entry] * 3, "t")  # the same bytes each time


def test_the_images_explained_are_the_most_confident_mistakes_then_the_least_sure_right_answers():
    probabilities = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.5, 0.1, 0.4]])
    truth = np.array([0, 0, 1, 2, 0])  # wrong: 1 (0.7 sure), 2 (0.6); right, least sure first: 4 (0.5), 3 (0.8), 0 (0.9)
    chosen, rivals = hardest(probabilities, truth, 4)
    assert chosen.tolist() == [1, 2, 4, 3]
    assert rivals.tolist() == [0, 1, 2, 0]  # a mistake's true class; a right answer's runner-up
