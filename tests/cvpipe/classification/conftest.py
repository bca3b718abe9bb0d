"""A tiny, clearly learnable classification set: three colours of square on a noisy background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvpipe.classification.data import ImageTable, load_table
from cvpipe.sources.samples import generate
from stages import ingest

COLOURS = {"blue": (30, 60, 220), "green": (30, 200, 60), "red": (220, 40, 40)}


def squares(n_per_class: int = 12, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N x 3 x size x size images and their labels."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, colour in enumerate(COLOURS.values()):
        for _ in range(n_per_class):
            im = rng.integers(90, 160, (size, size, 3))
            x, y = rng.integers(0, size // 2, 2)
            im[y : y + size // 2, x : x + size // 2] = colour
            images.append(im.astype(np.uint8).transpose(2, 0, 1))
            labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.int64)


@pytest.fixture(scope="session")
def fruits_manifest(tmp_path_factory) -> Path:
    """The embedded Fruits-360 sample, ingested (what the validate stage passes on)."""
    root = tmp_path_factory.mktemp("fruits")
    raw = generate("fruits360", root / "raw")
    ingest.run("fruits360", raw, root / "manifest")
    return root / "manifest"


@pytest.fixture
def fruits_table(fruits_manifest) -> ImageTable:
    return load_table(fruits_manifest, 0.2)


def save_png(path: Path, array_chw: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array_chw.transpose(1, 2, 0)).save(path)
    return path
