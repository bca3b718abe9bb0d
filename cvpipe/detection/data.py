"""Detection's data: a converted YOLO folder (``data/yolo/<dataset>``) read and checked, the training
mirror ultralytics trains on, and YOLO label files read back as pixel boxes.

The converted folder is a DVC output and stays untouched (ultralytics writes ``labels/*.cache`` beside
the labels it reads): training reads a mirror under the cache folder, with the images linked, the
labels copied, and the training split divided into what it trains on and what picks the best epoch
(``val_fraction``, by a stable hash of the file name). The converter's ``val`` split is held out for
the evaluate stage: the model never sees it.

Images are the project's image files (:data:`cvpipe.data.files.IMAGE_SUFFIXES`), except that a GIF is
refused: ultralytics reads no GIF as an image (``IMG_FORMATS`` in its ``data/utils.py``; it takes
``.gif`` for a video), so it would leave the file out of training without a word and predict on its
frames in evaluation.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from cvpipe.core.errors import DataError, ParamsError
from cvpipe.core.io import staged_dir, write_text
from cvpipe.data.classmap import ClassMap
from cvpipe.data.files import list_images
from cvpipe.data.splits import unit_hash

NOT_FOR_ULTRALYTICS = frozenset({".gif"})  # image files of the project's set that ultralytics does not read as images


def read_labels(path: Path, width: int, height: int) -> list[tuple[int, float, float, float, float]]:
    """YOLO label file -> (class, x_min, y_min, x_max, y_max) in pixels; the inverse of label_text."""
    out = []
    for line in path.read_text().splitlines():
        c, cx, cy, w, h = line.split()
        cx, cy, w, h = float(cx) * width, float(cy) * height, float(w) * width, float(h) * height
        out.append((int(c), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    return out


def split_images(folder: Path) -> list[Path]:
    """The image files of one split folder, by name; a GIF (which ultralytics cannot read) is a DataError."""
    images = list_images(folder)
    refused = [p for p in images if p.suffix.lower() in NOT_FOR_ULTRALYTICS]
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise DataError(refused[0], f"a GIF{more}, which ultralytics does not read as an image (it takes .gif for a "
                                    "video); convert the dataset's GIFs to PNG and convert again")
    return images


@dataclass(frozen=True)
class YoloSet:
    """A converted YOLO folder: its class map (checked against data.yaml), images and label files per split."""

    root: Path
    classes: ClassMap
    images: dict[str, list[Path]]

    @classmethod
    def read(cls, root: Path) -> YoloSet:
        """The converted folder at ``root``, checked: data.yaml and classes.json present and agreeing."""
        for required in ("data.yaml", "classes.json"):
            if not (root / required).is_file():
                raise DataError(root / required, "not found (run the convert_yolo stage first)")
        classes = ClassMap.load(root / "classes.json")
        try:
            data = yaml.safe_load((root / "data.yaml").read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise DataError(root / "data.yaml", f"malformed YAML: {exc}") from exc
        names = data.get("names") if isinstance(data, dict) else None
        names = list(names.values()) if isinstance(names, dict) else names
        if names != classes.names:
            raise DataError(root / "data.yaml", f"names {names} disagree with classes.json's {classes.names}; convert again")
        images = {}
        for split in ("train", "val", "test"):
            folder = root / "images" / split
            if folder.is_dir():
                images[split] = split_images(folder)
        return cls(root, classes, images)

    def label_file(self, image: Path) -> Path:
        """The YOLO label file of ``image`` (which may not exist: an image without boxes)."""
        return self.root / "labels" / image.parent.name / f"{image.stem}.txt"

    def crowd_file(self, image: Path) -> Path:
        """The crowd regions of ``image`` in YOLO's format (which may not exist: an image without any), for the
        evaluation to ignore detections on them; never read by training."""
        return self.root / "crowd" / image.parent.name / f"{image.stem}.txt"

    def boxes(self, split: str) -> int:
        """How many boxes the label files of ``split`` hold."""
        return sum(len(self.label_file(p).read_text().splitlines()) for p in self.images.get(split, []) if self.label_file(p).is_file())

    def held_out(self, split: str) -> str:
        """The folder evaluated for ``split``: ``test`` is the converter's test split if it has one, else its
        ``val`` (never trained on: training validates on a share of ``train``)."""
        if split == "test" and "test" not in self.images:
            return "val"
        if split not in self.images:
            raise DataError(self.root / "images", f"no {split!r} split; splits: {', '.join(self.images)}")
        return split

    def digest(self) -> str:
        """sha256 over every image's and label's bytes, by split and name: what training reads."""
        h = hashlib.sha256()
        for split, files in sorted(self.images.items()):
            for image in files:
                h.update(f"{split}/{image.name}\0".encode())
                h.update(hashlib.sha256(image.read_bytes()).digest())
                label = self.label_file(image)
                h.update(label.read_bytes() if label.is_file() else b"\0none")
        h.update(repr(self.classes.names).encode())
        return h.hexdigest()[:16]


def training_mirror(data: YoloSet, out: Path, val_fraction: float) -> dict[str, int]:
    """``out``: images linked and labels copied, ``train`` divided into train and val by a stable hash
    of the file name, and a ``data.yaml`` with an absolute path. Returns the images per split."""
    if not data.images.get("train"):
        raise DataError(data.root / "images" / "train", "no training images")
    if data.boxes("train") == 0:
        raise DataError(data.root / "labels" / "train", "not a single box in the training split: nothing to learn")
    counts = {"train": 0, "val": 0}
    with staged_dir(out) as stage:
        for split in counts:
            (stage / "images" / split).mkdir(parents=True)
            (stage / "labels" / split).mkdir(parents=True)
        for image in data.images["train"]:
            # salted: the converter drew its val split with the plain hash, so what it left has no low ones
            split = "val" if unit_hash(f"detection-train-val/{image.name}") < val_fraction else "train"
            counts[split] += 1
            os.symlink(image.resolve(), stage / "images" / split / image.name)
            label = data.label_file(image)
            if label.is_file():
                write_text(stage / "labels" / split / label.name, label.read_text())
        if not counts["val"] or not counts["train"]:
            raise ParamsError("val_fraction", f"{val_fraction} leaves {counts} of the {len(data.images['train'])} training "
                                              "images; both parts need some")
        doc = {"path": str(out.resolve()), "train": "images/train", "val": "images/val", "nc": len(data.classes),
               "names": dict(enumerate(data.classes.names))}
        write_text(stage / "data.yaml", yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return counts
