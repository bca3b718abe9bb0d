"""Nuclei segmentation input: the validated DSB2018 manifest as images, instance labels and targets.

``stage1_train`` images have one mask per nucleus; they are split by stable hashes of their paths
into ``train``, ``val`` (early stopping) and ``holdout`` (evaluation: the competition's own test
set has no public masks). ``stage1_test`` images are the ``test`` split, predicted for a submission.
Every image is read as RGB whatever its stored mode (DSB keeps grey images as RGBA).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from cvpipe.core.errors import DataError
from cvpipe.data.manifest import ManifestDir, manifest_of, parallel_map
from cvpipe.data.pil import open_image
from cvpipe.data.splits import check_fraction, unit_hash

HOLDOUT_SALT = "segmentation-holdout/"


@dataclass(frozen=True)
class NucleiSet:
    """Images of one segmentation dataset: files, splits, each training image's mask files, digests."""

    root: Path
    ids: list[str]  # the sample's id (DSB: the folder name, the ImageId of the CSVs)
    files: list[Path]
    paths: list[str]
    splits: np.ndarray  # "train" | "val" | "holdout" | "test" per image
    sha256: list[str]
    masks: dict[str, list[Path]]  # image path -> its mask files (train images only)
    mask_sha256: dict[str, list[str]]

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)

    def digest(self) -> str:
        """Content digest: every image's and mask's bytes (by sha256), path and split."""
        h = hashlib.sha256()
        for row in zip(self.paths, self.splits.tolist(), self.sha256, strict=True):
            h.update(json.dumps([*row, self.mask_sha256.get(row[0], [])]).encode())
        return h.hexdigest()


def load_set(manifest_dir: Path | ManifestDir, val_fraction: float, holdout_fraction: float, root: Path | None = None) -> NucleiSet:
    """The validated manifest of a segmentation dataset, split into train, val, holdout and test."""
    check_fraction(val_fraction, "val_fraction")
    check_fraction(holdout_fraction, "holdout_fraction")
    manifest = manifest_of(manifest_dir, "segmentation", root=root,
                           columns=["path", "split", "source_id", "sha256", "locate_error", "probe_error"])
    if manifest.masks is None:
        raise DataError(manifest.folder / "masks.parquet", "missing: a segmentation manifest lists its masks there")
    masks: dict[str, list[Path]] = {}
    mask_sha: dict[str, list[str]] = {}
    for row in manifest.masks.select(["path", "mask_path", "mask_sha256"]).to_pylist():
        masks.setdefault(row["path"], []).append(manifest.root / row["mask_path"])
        mask_sha.setdefault(row["path"], []).append(row["mask_sha256"])
    ids, files, paths, splits, digests = [], [], [], [], []
    for row in manifest.images.to_pylist():
        if row["locate_error"] or row["probe_error"]:
            raise DataError(manifest.root / row["path"], f"{row['locate_error'] or row['probe_error']} (validate the manifest first)")
        split = row["split"]
        if split != "test":
            split = "holdout" if unit_hash(HOLDOUT_SALT + row["path"]) < holdout_fraction else \
                "val" if unit_hash(row["path"]) < val_fraction else "train"
        ids.append(row["source_id"] or Path(row["path"]).stem)
        files.append(manifest.root / row["path"])
        paths.append(row["path"])
        splits.append(split)
        digests.append(row["sha256"])
    found = NucleiSet(manifest.root, ids, files, paths, np.array(splits, dtype=object).astype(str), digests, masks, mask_sha)
    if not len(found.indices("train")):
        raise DataError(manifest.folder / "manifest.parquet", "no training images (stage1_train is empty or all held out)")
    return found


def read_rgb(file: Path) -> np.ndarray:
    """One image as uint8 H x W x 3 RGB, whatever its stored mode (RGBA, grey, palette, 16-bit)."""
    try:
        with open_image(file) as im:
            if im.mode.startswith(("I", "F")):  # 16/32-bit or float grey: stretched to 8 bits, not clipped
                grey = np.asarray(im, dtype=np.float64)
                low, span = grey.min(), max(grey.max() - grey.min(), 1e-12)
                return np.repeat(np.round(255 * (grey - low) / span).astype(np.uint8)[..., None], 3, axis=2)
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DataError(file, f"cannot decode the image: {exc}") from exc


def read_instances(mask_files: list[Path], shape: tuple[int, int]) -> np.ndarray:
    """One nucleus per mask file -> int32 labels 1..n in file order (0 background); where masks
    overlap (DSB's never should) the first keeps the pixel."""
    labels = np.zeros(shape, dtype=np.int32)
    for k, file in enumerate(mask_files, start=1):
        try:
            with open_image(file) as im:
                mask = np.asarray(im.convert("L")) > 0
        except OSError as exc:
            raise DataError(file, f"cannot decode the mask: {exc}") from exc
        if mask.shape != shape:
            raise DataError(file, f"mask is {mask.shape[1]}x{mask.shape[0]}, its image {shape[1]}x{shape[0]}")
        labels[mask & (labels == 0)] = k
    return labels


def contact(labels: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels of a nucleus within ``width`` pixels of another nucleus: where touching nuclei meet."""
    footprint = np.ones((2 * width + 1, 2 * width + 1), dtype=bool)
    biggest = ndimage.maximum_filter(labels, footprint=footprint)
    smallest = ndimage.minimum_filter(np.where(labels > 0, labels, np.iinfo(np.int32).max), footprint=footprint)
    return (labels > 0) & ((biggest != labels) | (smallest != labels))


def targets(labels: np.ndarray, border: bool) -> np.ndarray:
    """uint8 C x H x W training targets: foreground, and with ``border`` the contact pixels of touching nuclei."""
    planes = [labels > 0] + ([contact(labels)] if border else [])
    return np.stack(planes).astype(np.uint8)


def load_images(data: NucleiSet, indices, workers: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(RGB image, instance labels) for each index, in order, read a few ahead on threads (never all held at
    once: full DSB images are large); images without masks get all-zero labels."""

    def read(k: int) -> tuple[np.ndarray, np.ndarray]:
        image = read_rgb(data.files[k])
        return image, read_instances(data.masks.get(data.paths[k], []), image.shape[:2])

    return parallel_map(read, list(indices), "read images + masks", workers, chunk=8)
