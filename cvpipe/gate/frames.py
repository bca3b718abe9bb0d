"""The tables the gate's checks run on: the manifest's, plus the per-image facts that need pixels."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from cvpipe.data.classmap import ClassMap
from cvpipe.data.decode import SUFFIX_FORMATS, decode_all
from cvpipe.data.manifest import ManifestDir, WorkPool
from cvpipe.gate.config import SPLIT_ORDER, Frames, GateConfig
from cvpipe.sources import get_source


def build_frames(manifest: ManifestDir, cfg: GateConfig, cache: Path | None, workers: int | WorkPool | None) -> Frames:
    """Manifest tables plus the per-image facts the checks need (decodes, leakage, RLE)."""
    root, classes = manifest.root, manifest.classes
    images = manifest.images.to_pandas()
    boxes = manifest.boxes.to_pandas() if manifest.boxes is not None else None
    masks = manifest.masks.to_pandas() if manifest.masks is not None else None

    readable = images[images["locate_error"].isna() & images["sha256"].notna()]
    files = {row.sha256: root / row.path for row in readable.itertuples()}
    decoded, stats = decode_all(files, cache, workers)
    for column in ("format", "decoded_mode", "decode_error"):
        images[column] = [decoded.get(d, {}).get(column) if isinstance(d, str) else None for d in images["sha256"]]
    images["expected_format"] = [SUFFIX_FORMATS.get(Path(p).suffix.lower()) for p in images["path"]]
    images["leak_with"] = _leaks(images)
    # Only an annotation that parsed can be faulted for lacking <size>; background images have none.
    images["size_declared"] = images["declared_width"].notna() | images["source_id"].isna() | images["annotation_error"].notna()
    source = get_source(cfg.source)
    if source.gate_columns is not None:  # facts only this layout has (an official RLE file, say)
        for column, values in source.gate_columns(root, images, masks, workers).items():
            images[column] = values
    # label files are named by the image's stem: x.jpg and x.PNG would write one x.txt
    images["stem_key"] = [os.path.splitext(p)[0].casefold() for p in images["path"]] if cfg.task == "detection" else None
    if boxes is not None:
        boxes = _box_frame(boxes, images, cfg)
    if masks is not None:
        size = images.set_index("path")[["width", "height"]].rename(columns=lambda c: f"image_{c}")
        masks = masks.join(size, on="path")
    classes_frame = _class_frame(images, boxes, masks, classes, cfg)
    return Frames(images, classes_frame, boxes, masks, _split_frame(images, manifest.splits), stats)


def _split_frame(images: pd.DataFrame, declared: dict[str, str]) -> pd.DataFrame:
    """Images per split: every split the layout declares (a folder, an annotation file), and the whole set."""
    counts = images["split"].value_counts()
    names = sorted(set(declared) | set(counts.index), key=lambda s: (SPLIT_ORDER.get(s, 3), s))
    rows = [{"split": s, "where": declared.get(s, ""), "images": int(counts.get(s, 0))} for s in names]
    if not rows:
        rows = [{"split": "(all)", "where": ".", "images": 0}]
    return pd.DataFrame(rows, columns=["split", "where", "images"])


def _leaks(images: pd.DataFrame) -> list[str | None]:
    """For each image, the path of an identical image in another split (null if none)."""
    first_in_split: dict[tuple[str, str], str] = {}
    for row in images.itertuples():
        if isinstance(row.sha256, str):
            first_in_split.setdefault((row.sha256, row.split), row.path)
    others: dict[str, list[tuple[str, str]]] = {}
    for (digest, split), path in first_in_split.items():
        others.setdefault(digest, []).append((split, path))
    leaks = []
    for row in images.itertuples():
        found = others.get(row.sha256, []) if isinstance(row.sha256, str) else []
        elsewhere = sorted((SPLIT_ORDER.get(s, 3), s, p) for s, p in found if s != row.split)
        leaks.append(elsewhere[0][2] if elsewhere else None)
    return leaks


def _box_frame(boxes: pd.DataFrame, images: pd.DataFrame, cfg: GateConfig) -> pd.DataFrame:
    size = images.drop_duplicates("path").set_index("path")[["width", "height"]]
    boxes = boxes.join(size, on="path")
    parsed = boxes["error"].isna()
    boxes["image_found"] = ~parsed | boxes["path"].isin(size.index)
    boxes["class_known"] = ~parsed | boxes["class_index"].notna()
    corners = ["x_min", "y_min", "x_max", "y_max"]
    # NaN is "missing" to every expectation, so it would pass them all: finiteness is a check of its
    # own, and a non-finite corner is hidden from the others (one defect, one failed check).
    values = boxes[corners].to_numpy(dtype="float64")
    boxes["finite"] = ~parsed | np.isfinite(values).all(axis=1)
    boxes["corners"] = [", ".join(f"{v:g}" for v in row) for row in values]
    boxes[corners] = boxes[corners].where(np.isfinite(values))
    boxes["abs_area"] = (boxes["x_max"] - boxes["x_min"]).abs() * (boxes["y_max"] - boxes["y_min"]).abs()
    boxes["x_limit"] = boxes["width"] + cfg.box_tolerance
    boxes["y_limit"] = boxes["height"] + cfg.box_tolerance
    return boxes


def _class_frame(images, boxes, masks, classes: ClassMap, cfg: GateConfig) -> pd.DataFrame:
    """Images per class in the training split (all images where the set has no split)."""
    training = images[images["split"].isin(["train", "unsplit"])]
    if cfg.task == "classification":
        counts = training["label"].value_counts()
    elif cfg.task == "detection" and boxes is not None:
        kept = boxes[boxes["path"].isin(training["path"]) & ~boxes["iscrowd"].astype(bool)]
        counts = kept.drop_duplicates(["path", "class_name"])["class_name"].value_counts()
    else:
        with_masks = masks["path"].nunique() if masks is not None else 0
        counts = pd.Series({classes.names[0]: with_masks})
    frame = pd.DataFrame({"class": classes.names, "images": [int(counts.get(n, 0)) for n in classes.names]})
    frame["folded"] = [n.strip().casefold() for n in classes.names]  # Kiwi, kiwi and "Kiwi " are one class
    frame["name_problem"] = [name_problem(n) for n in classes.names]
    # Size and balance are judged over the classes that occur; an absent one fails classes.present.
    frame["present_images"] = frame["images"].where(frame["images"] > 0).astype("float64")
    return frame


def name_problem(name: str) -> str | None:
    """What is wrong with a class name for the files made from it (data.yaml, label_map.pbtxt), or None."""
    if not name.strip():
        return "empty name"
    if name != name.strip():
        return "leading or trailing white space"
    bad = sorted({c for c in name if unicodedata.category(c).startswith("C") or c in "\"\\"})
    if bad:
        return f"contains {', '.join(repr(c) for c in bad)}, which label_map.pbtxt and data.yaml readers mangle"
    return None
