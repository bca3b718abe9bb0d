"""The data gate: Great Expectations suites over a dataset's manifest, boxes, masks and classes.

Each check has an id (``images.decode``); ``params.yaml`` decides which only warn. Per-image facts
that need pixels (full decodes, run-length encodings) are computed first and become columns, so
every check is a plain Great Expectations expectation over a table.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cvpipe.data.classmap import ClassMap
from cvpipe.data.decode import SUFFIX_FORMATS, DecodeStats, decode_all
from cvpipe.data.manifest import ManifestDir, WorkPool, parallel_map
from cvpipe.data.pil import open_image
from cvpipe.data.rle import dsb_decode

SPLIT_ORDER = {"train": 0, "unsplit": 0, "val": 1, "test": 2}
MAX_EXAMPLES = 20


@dataclass(frozen=True)
class GateConfig:
    """Thresholds and policies of the gate (``validate`` and ``datasets.<name>`` in params.yaml)."""

    task: str
    source: str
    modes: tuple[str, ...] = ("RGB",)
    min_width: int = 16
    min_height: int = 16
    min_images_per_class: int = 5
    max_imbalance_ratio: float = 20.0
    box_tolerance: float = 1.0
    warn: frozenset[str] = frozenset()


@dataclass
class Frames:
    """The tables the suites run on."""

    images: pd.DataFrame
    classes: pd.DataFrame
    boxes: pd.DataFrame | None = None
    masks: pd.DataFrame | None = None
    splits: pd.DataFrame | None = None
    decode: DecodeStats = field(default_factory=DecodeStats)


@dataclass(frozen=True)
class Check:
    """One expectation of the gate: its id, the table it runs on, and why a failing row fails."""

    id: str
    table: str
    expectation: object
    reason: Callable[[dict], str]


@dataclass
class CheckResult:
    check: str
    expectation: str
    table: str
    blocking: bool
    passed: bool
    unexpected_count: int
    examples: list[str]
    rows: list[dict] = field(default_factory=list, repr=False)
    order: int = 0

    def summary(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("rows", "order")}


# ---------------------------------------------------------------------------------------------- frames


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
    labels = sorted(root.glob("stage1_train_labels*.csv")) if cfg.source == "dsb2018" else []
    if labels:
        images["rle_error"] = _rle_errors(labels[0], root, images, masks, workers)
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


def _rle_errors(csv_file: Path, root: Path, images: pd.DataFrame, masks: pd.DataFrame | None,
                workers: int | WorkPool | None) -> list[str | None]:
    """DSB2018: does each image's official run-length encoding decode to exactly its mask files?"""
    labels = pd.read_csv(csv_file, dtype=str)
    by_id = labels.groupby("ImageId")["EncodedPixels"].apply(list).to_dict()
    mask_files = masks.groupby("path")["mask_path"].apply(list).to_dict() if masks is not None else {}
    # one plain tuple per image, with its own encodings and masks: what a Dask worker needs, no more
    rows = [(by_id.get(source_id), split, width, height, mask_files.get(path, []))
            for source_id, split, width, height, path
            in images[["source_id", "split", "width", "height", "path"]].itertuples(index=False, name=None)]
    check = functools.partial(_rle_error, csv_name=csv_file.name, root=root)
    return list(parallel_map(check, rows, "run-length encodings", workers))


def _rle_error(row: tuple, csv_name: str, root: Path) -> str | None:
    encodings, split, width, height, mask_paths = row
    if encodings is None or split != "train" or pd.isna(width):
        return None
    h, w = int(height), int(width)
    try:
        decoded = {dsb_decode(e, h, w).tobytes() for e in encodings}
    except ValueError as exc:
        return f"{csv_name}: {exc}"
    on_disk = set()
    for m in mask_paths:
        try:
            on_disk.add((np.asarray(open_image(root / m)) > 0).astype(np.uint8).tobytes())
        except Exception:  # noqa: BLE001 - an unreadable mask is reported by masks.readable
            continue
    if decoded != on_disk:
        return f"{len(decoded - on_disk)} of {len(encodings)} encodings match no mask file"
    return None


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


# ---------------------------------------------------------------------------------------------- checks


def checks(cfg: GateConfig, frames: Frames) -> list[Check]:
    """Every check that applies to this dataset, with thresholds from ``cfg``."""
    import great_expectations.expectations as gxe

    img, cls = frames.images, frames.classes
    out = [
        Check("images.exists", "images", gxe.ExpectColumnValuesToBeNull(column="locate_error"), lambda r: r["locate_error"]),
        Check("images.annotation", "images", gxe.ExpectColumnValuesToBeNull(column="annotation_error"), lambda r: r["annotation_error"]),
        Check("images.decode", "images", gxe.ExpectColumnValuesToBeNull(column="decode_error"), lambda r: r["decode_error"]),
        Check(
            "images.format", "images",
            gxe.ExpectColumnPairValuesToBeEqual(column_A="format", column_B="expected_format", ignore_row_if="either_value_is_missing"),
            lambda r: f"{r['format']} data in a file named {Path(r['path']).suffix}",
        ),
        Check(
            "images.mode", "images", gxe.ExpectColumnValuesToBeInSet(column="decoded_mode", value_set=list(cfg.modes)),
            lambda r: f"mode {r['decoded_mode']}, expected one of {list(cfg.modes)}",
        ),
        Check(
            "images.min_size", "images", gxe.ExpectColumnValuesToBeBetween(column="width", min_value=cfg.min_width),
            lambda r: f"{_size(r, '')} is smaller than {cfg.min_width}x{cfg.min_height}",
        ),
        Check(
            "images.min_size", "images", gxe.ExpectColumnValuesToBeBetween(column="height", min_value=cfg.min_height),
            lambda r: f"{_size(r, '')} is smaller than {cfg.min_width}x{cfg.min_height}",
        ),
        Check(
            "images.unique_in_split", "images",
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["split", "sha256"], ignore_row_if="any_value_is_missing"),
            lambda r: f"same content ({r['sha256'][:12]}) as another {r['split']} image",
        ),
        Check(
            "images.no_leakage", "images", gxe.ExpectColumnValuesToBeNull(column="leak_with"),
            lambda r: f"also in another split as {r['leak_with']}",
        ),
        Check(
            "images.unique_id", "images",
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["split", "source_id"], ignore_row_if="any_value_is_missing"),
            lambda r: f"image id {r['source_id']} is given to another {r['split']} image too",
        ),
    ]
    if cfg.task == "detection":
        out.append(Check(
            "images.unique_stem", "images", gxe.ExpectColumnValuesToBeUnique(column="stem_key"),
            lambda r: "another image has the same name but for its extension: their label files would collide",
        ))
    if cfg.task == "classification":
        out.append(Check(
            "images.label_known", "images", gxe.ExpectColumnValuesToBeInSet(column="label", value_set=list(cls["class"])),
            lambda r: f"label {r['label']!r} is not in the class map",
        ))
    if img["declared_width"].notna().any() or cfg.source == "voc":
        for dim in ("width", "height"):
            out.append(Check(
                "images.declared_size", "images",
                gxe.ExpectColumnPairValuesToBeEqual(column_A=dim, column_B=f"declared_{dim}", ignore_row_if="either_value_is_missing"),
                lambda r: f"annotation says {_size(r, 'declared_')}, image is {_size(r, '')}",
            ))
    if cfg.source == "voc":
        out.append(Check(
            "images.declared_size_present", "images",
            gxe.ExpectColumnValuesToBeInSet(column="size_declared", value_set=[True]),
            lambda r: f"annotation {r['source_id']} has no <size>",
        ))
    if "rle_error" in img:
        out.append(Check("images.rle", "images", gxe.ExpectColumnValuesToBeNull(column="rle_error"), lambda r: r["rle_error"]))

    top = int(cls["images"].max()) if len(cls) else 0
    out += [
        Check("splits.non_empty", "splits", gxe.ExpectColumnValuesToBeBetween(column="images", min_value=1),
              lambda r: "no images"),
        Check("classes.distinct_names", "classes", gxe.ExpectColumnValuesToBeUnique(column="folded"),
              lambda r: "another class has the same name but for case or surrounding spaces"),
        Check("classes.name", "classes", gxe.ExpectColumnValuesToBeNull(column="name_problem"), lambda r: r["name_problem"]),
        Check(
            "classes.present", "classes", gxe.ExpectColumnValuesToBeBetween(column="images", min_value=1),
            lambda r: "declared, but no training image has it",
        ),
        Check(
            "classes.min_images", "classes",
            gxe.ExpectColumnValuesToBeBetween(column="present_images", min_value=cfg.min_images_per_class),
            lambda r: f"{r['images']} training images, fewer than {cfg.min_images_per_class}",
        ),
        Check(
            "classes.imbalance", "classes",
            gxe.ExpectColumnValuesToBeBetween(column="present_images", min_value=math.ceil(top / cfg.max_imbalance_ratio)),
            lambda r: f"{r['images']} images against {top} of the largest class (ratio over {cfg.max_imbalance_ratio:g})",
        ),
    ]
    if frames.boxes is not None:
        tol = cfg.box_tolerance
        corner = lambda r: f"box ({r['corners']})"  # noqa: E731
        out += [
            Check("boxes.parse", "boxes", gxe.ExpectColumnValuesToBeNull(column="error"), lambda r: r["error"]),
            Check("boxes.finite", "boxes", gxe.ExpectColumnValuesToBeInSet(column="finite", value_set=[True]),
                  lambda r: f"{corner(r)} has a coordinate that is not a finite number"),
            Check("boxes.unique_id", "boxes",
                  gxe.ExpectCompoundColumnsToBeUnique(column_list=["annotation", "source_id"], ignore_row_if="any_value_is_missing"),
                  lambda r: f"annotation id {r['source_id']} is used by another box too"),
            Check("boxes.image_known", "boxes", gxe.ExpectColumnValuesToBeInSet(column="image_found", value_set=[True]),
                  lambda r: f"refers to image {r['source_image']!r}, which the dataset does not have"),
            Check("boxes.class_known", "boxes", gxe.ExpectColumnValuesToBeInSet(column="class_known", value_set=[True]),
                  lambda r: f"class {r['source_class']!r} is not in the class map"),
            Check("boxes.x_order", "boxes", gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="x_max", column_B="x_min", or_equal=True, ignore_row_if="either_value_is_missing"),
                lambda r: f"{corner(r)}: x_min > x_max"),
            Check("boxes.y_order", "boxes", gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="y_max", column_B="y_min", or_equal=True, ignore_row_if="either_value_is_missing"),
                lambda r: f"{corner(r)}: y_min > y_max"),
            Check("boxes.nonzero_area", "boxes", gxe.ExpectColumnValuesToBeBetween(column="abs_area", min_value=0, strict_min=True),
                  lambda r: f"{corner(r)} has zero area"),
        ]
        inside = lambda r: f"{corner(r)} outside the {_size(r, '')} image by more than {tol:g} px"  # noqa: E731
        out += [
            Check("boxes.inside", "boxes", gxe.ExpectColumnValuesToBeBetween(column="x_min", min_value=-tol), inside),
            Check("boxes.inside", "boxes", gxe.ExpectColumnValuesToBeBetween(column="y_min", min_value=-tol), inside),
            Check("boxes.inside", "boxes", gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="x_limit", column_B="x_max", or_equal=True, ignore_row_if="either_value_is_missing"), inside),
            Check("boxes.inside", "boxes", gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="y_limit", column_B="y_max", or_equal=True, ignore_row_if="either_value_is_missing"), inside),
        ]
    if frames.masks is not None:
        out += [
            Check("masks.readable", "masks", gxe.ExpectColumnValuesToBeNull(column="probe_error"), lambda r: r["probe_error"]),
            Check("masks.same_size", "masks", gxe.ExpectColumnPairValuesToBeEqual(
                column_A="width", column_B="image_width", ignore_row_if="either_value_is_missing"),
                lambda r: f"mask {_size(r, '')}, image {_size(r, 'image_')}"),
            Check("masks.same_size", "masks", gxe.ExpectColumnPairValuesToBeEqual(
                column_A="height", column_B="image_height", ignore_row_if="either_value_is_missing"),
                lambda r: f"mask {_size(r, '')}, image {_size(r, 'image_')}"),
            Check("masks.binary", "masks", gxe.ExpectColumnValuesToBeInSet(column="binary", value_set=[True]),
                  lambda r: "more than two values, or no zero background"),
            Check("masks.non_empty", "masks", gxe.ExpectColumnValuesToBeBetween(column="area", min_value=1),
                  lambda r: "no foreground pixel"),
        ]
    for n, c in enumerate(out):
        c.expectation.meta = {"check": c.id, "blocking": c.id not in cfg.warn, "n": n}
    return out


def _size(row: dict, prefix: str) -> str:
    """``WxH`` from ``<prefix>width`` and ``<prefix>height`` (nullable integers arrive as floats)."""
    def fmt(v):
        return "?" if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    return f"{fmt(row.get(prefix + 'width'))}x{fmt(row.get(prefix + 'height'))}"


def example(table: str, row: dict) -> str:
    """How a failing row is named in reports: the file, and for boxes the annotation too."""
    if table == "boxes":
        return f"{row['annotation']} ({row['path']})" if row.get("path") else str(row["annotation"])
    if table == "masks":
        return str(row["mask_path"])
    if table == "classes":
        return f"class {row['class']!r}"
    if table == "splits":
        return f"split {row['split']!r} ({row['where']})" if row.get("where") else f"split {row['split']!r}"
    return str(row["path"])


def run_checks(cfg: GateConfig, frames: Frames, docs_dir: Path | None, name: str) -> list[CheckResult]:
    """Run the suites with Great Expectations; write its Data Docs to ``docs_dir``."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX's config module pins its own logger at INFO and announces a temporary docs folder on it.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    actions = []
    if docs_dir is not None:
        context.add_data_docs_site(
            site_name="report",
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
            },
        )
        actions = [UpdateDataDocsAction(name="data_docs", site_names=["report"])]
    source = context.data_sources.add_pandas(name)
    all_checks = checks(cfg, frames)
    results: list[CheckResult] = []
    for table in ("images", "splits", "classes", "boxes", "masks"):
        frame = getattr(frames, table)
        table_checks = [c for c in all_checks if c.table == table]
        if frame is None or not table_checks:
            continue
        frame = frame.reset_index(drop=True)
        frame["_row"] = np.arange(len(frame))  # GX reports failing rows by this: exact, unlike any key column
        suite = context.suites.add(gx.ExpectationSuite(name=f"{name}.{table}"))
        for c in table_checks:
            suite.add_expectation(c.expectation)
        batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe(table)
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=f"{name}.{table}", data=batch, suite=suite))
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name=f"{name}.{table}", validation_definitions=[definition], actions=actions,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["_row"]},
        ))
        outcome = checkpoint.run(batch_parameters={"dataframe": frame})
        (validation,) = outcome.run_results.values()
        by_n = {all_checks.index(c): c for c in table_checks}
        results += [_result(by_n[r.expectation_config.meta["n"]], r, frame, table) for r in validation.results]
    return sorted(results, key=lambda r: r.order)


def _result(c: Check, r, frame: pd.DataFrame, table: str) -> CheckResult:
    config = r.expectation_config
    rows = []
    for ir in r.result.get("unexpected_index_list") or []:
        row = {k: (None if _missing(v) else v) for k, v in frame.iloc[int(ir["_row"])].to_dict().items()}
        rows.append({**row, "_reason": c.reason(row)})
    columns = config.kwargs.get("column") or ", ".join(
        str(config.kwargs[k]) for k in ("column_A", "column_B", "column_list") if k in config.kwargs
    )
    return CheckResult(
        check=c.id,
        expectation=f"{config.type}({columns})",
        table=table,
        blocking=bool(config.meta.get("blocking", True)),
        passed=bool(r.success),
        unexpected_count=int(r.result.get("unexpected_count") or len(rows)),
        examples=[f"{example(table, row)}: {row['_reason']}" for row in rows[:MAX_EXAMPLES]],
        rows=rows,
        order=int(config.meta["n"]),
    )


def _missing(value) -> bool:
    try:
        return value is None or (not isinstance(value, (str, bytes, list, tuple)) and bool(pd.isna(value)))
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------- quarantine


@dataclass
class Quarantine:
    """What ``on_fail: quarantine`` removes: images (by path) and box rows, each with its reason."""

    images: set[str] = field(default_factory=set)
    box_rows: set[tuple[str, str | None]] = field(default_factory=set)  # (annotation, source_id) of boxes without an image
    rows: list[dict] = field(default_factory=list)  # quarantine.csv: file, image, expectation, reason
    unfixable: list[CheckResult] = field(default_factory=list)  # failures that removing rows cannot fix


def quarantine(results: list[CheckResult]) -> Quarantine:
    """Decide which images to set aside for the blocking failures; nothing on disk is touched.

    A duplicate keeps its first copy; an image shared between splits stays in the earliest split
    (train before val before test), so evaluation never sees a training image. An image whose boxes
    or masks fail loses them all: a half-annotated image would teach wrong negatives.
    """
    q = Quarantine()
    for r in results:
        if r.passed or not r.blocking:
            continue
        if r.table in ("classes", "splits"):
            q.unfixable.append(r)
            continue
        rows = r.rows
        if r.check == "images.unique_stem":  # keep the first of each name
            rows = _repeats(r.rows, lambda row: row["stem_key"])
        elif r.check == "images.unique_in_split":
            rows = _repeats(r.rows, lambda row: (row["split"], row["sha256"]))
        elif r.check == "images.no_leakage":
            split_of = {row["path"]: row["split"] for row in r.rows}
            rank = lambda split: SPLIT_ORDER.get(split, 3)  # noqa: E731
            rows = [row for row in r.rows if rank(row["split"]) > rank(split_of.get(row["leak_with"], "train"))]
        for row in rows:
            image = row.get("path")
            if image:
                q.images.add(image)
            elif r.table == "boxes":
                q.box_rows.add((row["annotation"], row["source_id"]))
            if r.table == "boxes":
                file = row["annotation"]
            elif r.table == "masks":
                file = row["mask_path"]
            else:
                file = image
            q.rows.append({"file": file, "image": image or "", "expectation": r.check, "reason": row["_reason"]})
    return q


def _repeats(rows: list[dict], key: Callable[[dict], object]) -> list[dict]:
    """The rows whose key an earlier row already had: all copies but the first."""
    seen: set = set()
    out = []
    for row in rows:
        k = key(row)
        if k in seen:
            out.append(row)
        seen.add(k)
    return out
