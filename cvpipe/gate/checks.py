"""The gate's checks, one Great Expectations expectation each, and running them as suites."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from cvpipe.gate.config import MAX_EXAMPLES, Check, CheckResult, Frames, GateConfig
from cvpipe.gate.offline_docs import localize
from cvpipe.sources import get_source


def checks(cfg: GateConfig, frames: Frames) -> list[Check]:
    """Every check that applies to this dataset, with thresholds from ``cfg``, in the report's order."""
    import great_expectations.expectations as gxe

    out = _image_checks(gxe, cfg, frames) + _source_checks(gxe, cfg, frames) + _class_checks(gxe, cfg, frames)
    if frames.boxes is not None:
        out += _box_checks(gxe, cfg)
    if frames.masks is not None:
        out += _mask_checks(gxe)
    for n, c in enumerate(out):
        c.expectation.meta = {"check": c.id, "blocking": c.id not in cfg.warn, "n": n}
    return out


def _image_checks(gxe, cfg: GateConfig, frames: Frames) -> list[Check]:
    """Checks of every image: found, decodable, of the right format, mode and size, unique, not leaked."""
    cls = frames.classes
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
    return out


def _source_checks(gxe, cfg: GateConfig, frames: Frames) -> list[Check]:
    """Declared sizes against real ones, and the checks the dataset's layout adds (its Source)."""
    source, out = get_source(cfg.source), []
    if frames.images["declared_width"].notna().any() or source.declares_sizes:
        for dim in ("width", "height"):
            out.append(Check(
                "images.declared_size", "images",
                gxe.ExpectColumnPairValuesToBeEqual(column_A=dim, column_B=f"declared_{dim}", ignore_row_if="either_value_is_missing"),
                lambda r: f"annotation says {_size(r, 'declared_')}, image is {_size(r, '')}",
            ))
    for c in source.gate_checks:
        table = getattr(frames, c.table)
        if table is not None and c.kwargs.get("column") in table:
            out.append(Check(c.id, c.table, getattr(gxe, c.expectation)(**c.kwargs), c.reason))
    return out


def _class_checks(gxe, cfg: GateConfig, frames: Frames) -> list[Check]:
    """Splits that are not empty; class names, presence, size and balance."""
    cls = frames.classes
    top = int(cls["images"].max()) if len(cls) else 0
    return [
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


def _box_checks(gxe, cfg: GateConfig) -> list[Check]:
    """Boxes that parse, are finite, unique, on a known image and class, ordered, non-empty and inside."""
    tol = cfg.box_tolerance
    corner = lambda r: f"box ({r['corners']})"  # noqa: E731
    out = [
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
    return out


def _mask_checks(gxe) -> list[Check]:
    """Masks that are readable, of their image's size, binary and not empty."""
    return [
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
    """Run the suites with Great Expectations; write its Data Docs to ``docs_dir``, made to open offline."""
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
    if docs_dir is not None and docs_dir.is_dir():
        localize(docs_dir)  # no CDN stylesheet or script: the pages open offline
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
