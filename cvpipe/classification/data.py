"""Classification input pipeline: decode and resize every image once, then feed batches from memory.

The validated manifest names each image, its class and its split. ``load_tensors`` decodes and
resizes all of them once into one uint8 array, cached under ``.cache/cvpipe/tensors`` by the
images' sha256 digests and the size, so later epochs, stages and runs reuse it. Batches are then
slices of that array; augmentation runs on whole batches on the training device
(:class:`BatchAugment`: one random affine matrix per image, applied with ``grid_sample``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cvpipe.core.errors import DataError
from cvpipe.core.io import atomic_path
from cvpipe.data.classmap import ClassMap
from cvpipe.data.manifest import ManifestDir, manifest_of, parallel_map
from cvpipe.data.pil import open_image
from cvpipe.data.splits import check_fraction, unit_hash

CACHE_VERSION = 1  # bump when the decoding or resizing below changes
MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics: what torchvision's pretrained weights expect
STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageTable:
    """Images of one classification dataset: files, class indices, splits, content digests."""

    classes: ClassMap
    files: list[Path]
    paths: list[str]
    labels: np.ndarray  # int64 class index per image
    splits: np.ndarray  # "train" | "val" | "test" per image
    sha256: list[str]

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)

    def digest(self) -> str:
        """Content digest of the table: every image's bytes (by sha256), path, label and split."""
        h = hashlib.sha256(json.dumps(self.classes.names).encode())
        for row in zip(self.paths, self.labels.tolist(), self.splits.tolist(), self.sha256, strict=True):
            h.update(json.dumps(row).encode())
        return h.hexdigest()


def load_table(manifest_dir: Path | ManifestDir, val_fraction: float = 0.2, root: Path | None = None) -> ImageTable:
    """The validated manifest of a classification dataset, with a ``val`` split carved from train.

    Train/test come from the source layout (Fruits-360 Training/Test, the Simpsons test set); when
    the source has no val split, a stable hashed ``val_fraction`` of the training images becomes
    val (early stopping and checkpoints watch it), and test stays untouched for evaluation. A source
    with a val split and no test (Training/Validation) has its val held out as test, and val carved
    from train as above.
    """
    check_fraction(val_fraction)
    manifest = manifest_of(manifest_dir, "classification", root=root,
                           columns=["path", "split", "label", "sha256", "locate_error", "probe_error"])
    root, classes = manifest.root, manifest.classes
    rows = manifest.images.to_pylist()
    files, paths, labels, splits, digests = [], [], [], [], []
    for row in rows:
        if row["locate_error"] or row["probe_error"]:
            raise DataError(root / row["path"], f"{row['locate_error'] or row['probe_error']} (validate the manifest first)")
        if row["label"] not in classes.names:
            raise DataError(manifest.folder / "manifest.parquet", f"{row['path']}: label {row['label']!r} is not in classes.json")
        split = {"unsplit": "train"}.get(row["split"], row["split"])
        files.append(root / row["path"])
        paths.append(row["path"])
        labels.append(classes.index_of(row["label"]))
        digests.append(row["sha256"])
        splits.append(split)
    splits_arr = np.array(splits, dtype=object)
    if not (splits_arr == "test").any() and (splits_arr == "val").any():
        # Training/Validation without Test (Fruits-360 before its Validation folder was renamed Test): the source's
        # val is the held-out split, and early stopping watches val_fraction of train instead, never the images scored
        splits_arr[splits_arr == "val"] = "test"
    if not (splits_arr == "val").any():
        for k, path in enumerate(paths):
            if splits_arr[k] == "train" and unit_hash(path) < val_fraction:
                splits_arr[k] = "val"
    if not (splits_arr == "train").any():
        raise DataError(manifest.folder / "manifest.parquet", "no training images")
    return ImageTable(classes, files, paths, np.array(labels, dtype=np.int64), splits_arr.astype(str), digests)


def decode_resized(file: Path, size: int) -> np.ndarray:
    """One image as uint8 HWC RGB at size x size (squashed, as Keras' target_size does)."""
    try:
        with open_image(file) as im:
            return np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    except OSError as exc:
        raise DataError(file, f"cannot decode the image: {exc}") from exc


def load_tensors(table: ImageTable, size: int, cache_dir: Path | None, workers: int | None = None) -> np.ndarray:
    """Every image of ``table`` as one uint8 N x 3 x size x size array, decoded at most once per content.

    The cache file is named by the digests of the images and the size; it is written atomically.
    """
    key = hashlib.sha256(json.dumps([CACHE_VERSION, size, table.sha256]).encode()).hexdigest()[:32]
    path = cache_dir / f"{key}.npy" if cache_dir is not None else None
    if path is not None and path.is_file():
        return np.load(path, mmap_mode="r")
    # Each image goes straight into its slot: one N x 3 x size x size array in memory, never a list of the
    # decoded images plus their stack plus its transpose (3x the array: 3.3 GB for Fruits-360's 90,000 at 64 px)
    array = np.empty((len(table.files), 3, size, size), dtype=np.uint8)
    for k, image in enumerate(parallel_map(lambda f: decode_resized(f, size), table.files, "decode + resize", workers, chunk=16)):
        array[k] = image.transpose(2, 0, 1)
    if path is not None:
        with atomic_path(path) as tmp, open(tmp, "wb") as out:
            np.save(out, array)
    return array


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW -> float, normalised with the ImageNet mean and std."""
    mean = torch.tensor(MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=batch.device).view(1, 3, 1, 1)
    return (batch.float() / 255.0 - mean) / std


@dataclass(frozen=True)
class AugmentConfig:
    """Keras ImageDataGenerator's knobs: degrees, fractions of the size, a zoom range, a flip."""

    rotation: float = 0.0  # degrees, +-
    width_shift: float = 0.0  # fraction of the width, +-
    height_shift: float = 0.0
    shear: float = 0.0  # degrees, +-
    zoom: float = 0.0  # scale in [1 - zoom, 1 + zoom]
    horizontal_flip: bool = False

    @property
    def enabled(self) -> bool:
        return any((self.rotation, self.width_shift, self.height_shift, self.shear, self.zoom, self.horizontal_flip))


class BatchAugment:
    """Random affine transforms, one per image, applied to a whole batch in one ``grid_sample``."""

    def __init__(self, config: AugmentConfig, generator: torch.Generator) -> None:
        self.config, self.generator = config, generator

    def _uniform(self, n: int, bound: float) -> torch.Tensor:
        return (torch.rand(n, generator=self.generator) * 2 - 1) * bound

    def matrices(self, n: int) -> torch.Tensor:
        """n x 2 x 3 affine matrices in normalised coordinates (output -> input sampling)."""
        c = self.config
        angle = self._uniform(n, math.radians(c.rotation))
        shear = self._uniform(n, math.radians(c.shear))
        scale = 1 + self._uniform(n, c.zoom)
        flip = torch.where(torch.rand(n, generator=self.generator) < 0.5, -1.0, 1.0) if c.horizontal_flip else torch.ones(n)
        cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
        # rotation @ shear, scaled; the flip mirrors x before anything else
        a = torch.stack([torch.stack([cos, cos * tan - sin], 1), torch.stack([sin, sin * tan + cos], 1)], 1) / scale.view(n, 1, 1)
        a = a * torch.stack([flip, torch.ones(n)], 1).view(n, 1, 2)
        shift = torch.stack([self._uniform(n, 2 * c.width_shift), self._uniform(n, 2 * c.height_shift)], 1)
        return torch.cat([a, shift.view(n, 2, 1)], 2)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Float NCHW in, float NCHW out (edges filled by reflection, as Keras' ``fill_mode='reflect'``)."""
        if not self.config.enabled:
            return batch
        theta = self.matrices(batch.shape[0]).to(batch.device, batch.dtype)
        grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
        return F.grid_sample(batch, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class Batches:
    """Shuffled (or ordered) batches of (images, labels) from the in-memory array, on ``device``.

    The whole uint8 array is moved to the device once when it fits (it does for these datasets:
    N x 3 x 64 x 64 bytes); a batch is then an index, a cast and a normalisation.

    ``drop_single``: a last batch of one image (17 images in batches of 16) is left out of the epoch, as
    DDP's training loop leaves out a batch too small to shard: BatchNorm in train mode needs more than one
    value per channel (LittleVGG's BatchNorm1d fails on one). Its augmentation is still drawn, so the
    random stream, and every run whose last batch is larger, is as without it; with shuffled epochs the
    image left out differs from epoch to epoch. A set of one image is kept (there is nothing else to train).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray, batch_size: int, device: torch.device,
                 shuffle: bool, generator: torch.Generator | None = None, augment: BatchAugment | None = None,
                 drop_single: bool = False) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images[indices])).to(device)
        self.labels = torch.from_numpy(labels[indices]).to(device)
        self.batch_size, self.shuffle, self.generator, self.augment = batch_size, shuffle, generator, augment
        self.drop_single = drop_single

    def __len__(self) -> int:
        n = len(self.labels)
        return math.ceil(n / self.batch_size) - int(self.dropped(n))

    def dropped(self, n: int) -> bool:
        """Is the last batch of an epoch over ``n`` images left out (one image after others)?"""
        return self.drop_single and n > 1 and n % self.batch_size == 1

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.images.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = to_float(self.images.index_select(0, idx))
            if self.augment is not None:
                x = self.augment(x)
            if start + 1 == n and self.dropped(n):
                break
            yield x, self.labels.index_select(0, idx)
