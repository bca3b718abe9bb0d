"""A converted YOLO folder from the VOC sample, shared by the detection tests of a module."""

from __future__ import annotations

import pytest

from cvpipe.sources.samples import generate
from stages import convert


@pytest.fixture(scope="module")
def yolo(tmp_path_factory):
    base = tmp_path_factory.mktemp("det")
    root = generate("voc", base / "raw")
    convert.run("voc-yolo", base / "yolo", root / "annotations", root / "images", val_fraction=0.2)
    return base / "yolo"
