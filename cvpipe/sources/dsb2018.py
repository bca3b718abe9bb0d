"""Kaggle Data Science Bowl 2018: ``stage1_train/<id>/images/<id>.png`` and ``masks/*.png``."""

from __future__ import annotations

from pathlib import Path

from cvpipe.core.errors import DataError
from cvpipe.data.classmap import ClassMap
from cvpipe.data.files import list_images, rel, require_dir
from cvpipe.data.manifest import ImageRef, MaskRef, ReadResult

CLASSES = ("nucleus",)


def read(root: Path) -> ReadResult:
    """Every ``stage*_train`` / ``stage*_test`` folder; one image per sample, masks per nucleus."""
    require_dir(root, "DSB2018 root")
    stage_dirs = sorted(d for d in root.glob("stage*_*") if d.is_dir())
    if not stage_dirs:
        raise DataError(root, "no stage1_train/ or stage1_test/ folders")
    images: list[ImageRef] = []
    masks: list[MaskRef] = []
    for stage in stage_dirs:
        split = "train" if stage.name.endswith("train") else "test"
        for sample in sorted(d for d in stage.iterdir() if d.is_dir()):
            image_dir = sample / "images"
            found = list_images(image_dir) if image_dir.is_dir() else []
            if len(found) != 1:
                raise DataError(image_dir, f"expected one image for sample {sample.name}, found {len(found)}")
            image = found[0]
            images.append(ImageRef(file=image, path=rel(image, root), split=split, source_id=sample.name))
            mask_dir = sample / "masks"
            if mask_dir.is_dir():
                masks += [
                    MaskRef(file=m, path=rel(image, root), mask_path=rel(m, root), split=split)
                    for m in list_images(mask_dir)
                ]
    splits = [("train" if s.name.endswith("train") else "test", rel(s, root)) for s in stage_dirs]
    return ReadResult(task="segmentation", classes=ClassMap.from_names(CLASSES), images=images, masks=masks, splits=splits)
