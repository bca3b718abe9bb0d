"""Validate: the data gate. Great Expectations suites over a dataset's manifest before anything trains.

    python -m stages.validate --manifest-dir DIR --task TASK --report DIR
        [--out DIR] [--dataset NAME] [--root DIR] [--metrics FILE]

Thresholds, which checks only warn, and ``on_fail: stop | quarantine`` come from params.yaml
(section ``validate``, plus ``datasets.<name>.modes`` and ``datasets.<name>.warn``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.compute as pc

from cvpipe.core import cli
from cvpipe.core.errors import DataError, GateFailed, ParamsError
from cvpipe.core.io import remove_dir, staged_dir, write_json, write_text
from cvpipe.core.params import check_keys, choice, load_params, mapping, number, string_list
from cvpipe.data.manifest import (
    BOX_SCHEMA,
    MANIFEST_SCHEMA,
    MASK_SCHEMA,
    ManifestDir,
    WorkPool,
    manifest_of,
    read_manifest_dir,
    write_table,
)
from cvpipe.data.parallel import DaskSettings, open_workers
from cvpipe.gate import CheckResult, GateConfig, build_frames, quarantine, run_checks
from cvpipe.tasks import TASKS, dataset_spec

log = logging.getLogger(__name__)
ON_FAIL = ("stop", "quarantine")
SHOWN = 5  # examples per failed check on the console; the summary JSON keeps up to 20


@dataclass(frozen=True)
class ValidateResult:
    """Outcome of the gate; ``passed`` is False when a blocking check failed and was not quarantined."""

    dataset: str
    passed: bool
    images: int
    kept_images: int
    quarantined_images: int
    blocking_failures: int
    warnings: int
    decoded: int
    decode_cache_hits: int

    def metrics(self) -> dict:
        """Counts for ``dvc metrics``; decode counts depend on the local cache, so they are left out."""
        skip = ("decoded", "decode_cache_hits")
        return {k: (int(v) if isinstance(v, bool) else v) for k, v in asdict(self).items() if k not in skip}


def run(
    manifest_dir: Path | ManifestDir,
    cfg: GateConfig,
    report: Path,
    out: Path | None = None,
    on_fail: str = "stop",
    root: Path | None = None,
    cache: Path | None = None,
    workers: int | WorkPool | None = None,
    name: str | None = None,
) -> tuple[ValidateResult, list[CheckResult]]:
    """Run every check; write the report (Data Docs + summary.json) and, unless stopped, the clean tables.
    ``manifest_dir`` is ingest's folder, or that folder already read (the command line reads it once)."""
    if on_fail not in ON_FAIL:
        raise ParamsError("validate.on_fail", f"is {on_fail!r}; choose one of {list(ON_FAIL)}")
    manifest = manifest_of(manifest_dir, root=root, allow_empty=True)
    if manifest.task != cfg.task:
        raise DataError(manifest.file("dataset.json"), f"task is {manifest.task!r}, validated as {cfg.task!r}")
    name = name or manifest.folder.name

    with staged_dir(report) as staging:  # Data Docs and summary.json replaced as one unit
        frames = build_frames(manifest, cfg, cache, workers)
        results = run_checks(cfg, frames, staging / "data_docs", name)
        failed = [r for r in results if not r.passed and r.blocking]
        q = quarantine(results) if on_fail == "quarantine" else None
        passed = not failed or (q is not None and not q.unfixable)
        n_images = len(frames.images)
        dropped = len(q.images) if q is not None and passed else 0
        result = ValidateResult(
            dataset=name,
            passed=passed,
            images=n_images,
            kept_images=n_images - dropped if passed else 0,
            quarantined_images=dropped,
            blocking_failures=len(failed),
            warnings=sum(not r.passed and not r.blocking for r in results),
            decoded=frames.decode.decoded,
            decode_cache_hits=frames.decode.cached,
        )
        summary = {**result.metrics(), "on_fail": on_fail, "task": cfg.task, "checks": [r.summary() for r in results]}
        write_json(staging / "summary.json", summary)
    if out is not None:
        if passed:
            with staged_dir(out) as staging:  # replaced as one unit
                _write_clean(manifest, staging, q)
        else:
            remove_dir(out)  # a stopped gate leaves nothing downstream could mistake for clean data
    return result, results


def _write_clean(manifest: ManifestDir, out: Path, q) -> None:
    """The manifest tables without quarantined images (all of them when nothing is quarantined)."""
    drop = sorted(q.images) if q is not None else []
    rows: dict[str, int] = {}
    tables = [("manifest.parquet", MANIFEST_SCHEMA, manifest.images), ("boxes.parquet", BOX_SCHEMA, manifest.boxes),
              ("masks.parquet", MASK_SCHEMA, manifest.masks)]
    for filename, schema, table in tables:
        if table is None:
            continue
        keep = pc.invert(pc.is_in(table["path"], value_set=_strings(drop)))
        keep = pc.fill_null(keep, True)
        if filename == "boxes.parquet" and q is not None and q.box_rows:
            key = pc.binary_join_element_wise(table["annotation"], pc.fill_null(table["source_id"], ""), "\0")
            dropped = sorted(f"{a}\0{s or ''}" for a, s in q.box_rows)
            keep = pc.and_(keep, pc.invert(pc.is_in(key, value_set=_strings(dropped))))
        rows[filename] = write_table(table.filter(keep).to_pylist(), schema, out / filename)
    shutil.copyfile(manifest.file("classes.json"), out / "classes.json")
    info = json.loads(manifest.file("dataset.json").read_text(encoding="utf-8"))
    write_json(out / "dataset.json", {**info, "rows": rows})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["file", "image", "expectation", "reason"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(q.rows if q is not None else [])
    write_text(out / "quarantine.csv", buffer.getvalue())


def _strings(values: list[str]):
    import pyarrow as pa

    return pa.array(values, type=pa.string())


def format_summary(result: ValidateResult, results: list[CheckResult], report: Path) -> str:
    """One screen: each failed check with a few example files; the rest is in the report."""
    failed = [r for r in results if not r.passed]
    verdict = "passed" if result.passed else "FAILED"
    lines = [
        f"validate {result.dataset}: {verdict} - {result.images} images, {result.blocking_failures} blocking "
        f"check(s) failed, {result.warnings} warning(s), {result.quarantined_images} quarantined "
        f"({result.decoded} decoded, {result.decode_cache_hits} from cache)"
    ]
    for r in failed:
        kind = "FAIL" if r.blocking else "WARN"
        lines.append(f"  {kind} {r.check}: {r.expectation} - {r.unexpected_count} unexpected")
        lines += [f"       {e}" for e in r.examples[:SHOWN]]
        if r.unexpected_count > SHOWN:
            lines.append(f"       ... {r.unexpected_count - SHOWN} more")
    if failed:
        lines.append(f"  report: {report / 'summary.json'} and {report / 'data_docs' / 'index.html'}")
    return "\n".join(lines)


VALIDATE_KEYS = ("on_fail", "modes", "min_width", "min_height", "min_images_per_class", "max_imbalance_ratio",
                 "box_tolerance", "warn", "cache", "workers")


def config_from_params(params: dict, dataset: str, task: str, source: str) -> GateConfig:
    """GateConfig for one dataset from the ``validate`` and ``datasets`` sections of params.yaml."""
    v = mapping(params.get("validate"), "validate")
    check_keys(v, VALIDATE_KEYS, "validate")
    # a manifest folder validated on its own (not a dataset of params.yaml) gets the section's defaults
    d = dataset_spec(params, dataset) if dataset in mapping(params.get("datasets"), "datasets") else {}
    modes_key = f"datasets.{dataset}.modes" if "modes" in d else "validate.modes"
    return GateConfig(
        task=task,
        source=source,
        modes=tuple(string_list(d.get("modes", v.get("modes", ["RGB"])), modes_key)),
        min_width=number(v.get("min_width", 16), "validate.min_width", integer=True, minimum=1),
        min_height=number(v.get("min_height", 16), "validate.min_height", integer=True, minimum=1),
        min_images_per_class=number(v.get("min_images_per_class", 5), "validate.min_images_per_class", integer=True, minimum=0),
        max_imbalance_ratio=float(number(v.get("max_imbalance_ratio", 20), "validate.max_imbalance_ratio", minimum=1)),
        box_tolerance=float(number(v.get("box_tolerance", 1.0), "validate.box_tolerance", minimum=0)),
        warn=(
            frozenset(string_list(v.get("warn", []), "validate.warn"))
            | frozenset(string_list(d.get("warn", []), f"datasets.{dataset}.warn"))
        ),
    )


def settings(params: dict) -> tuple[str, Path | None, int | None]:
    """(on_fail, decode cache, workers) from the ``validate`` section."""
    v = mapping(params.get("validate"), "validate")
    on_fail = choice(v.get("on_fail", "stop"), "validate.on_fail", ON_FAIL)
    cache = v.get("cache")
    if cache is not None and not isinstance(cache, str):
        raise ParamsError("validate.cache", f"must be a file path or null, not {cache!r}")
    workers = v.get("workers")
    if workers is not None:
        number(workers, "validate.workers", integer=True, minimum=1)
    return on_fail, Path(cache) if cache else None, workers


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stages.validate", description=__doc__.splitlines()[0])
    parser.add_argument("--manifest-dir", required=True, type=Path, help="output folder of stages.ingest")
    parser.add_argument("--task", required=True, choices=list(TASKS))
    parser.add_argument("--report", required=True, type=Path, help="folder for Data Docs and summary.json")
    parser.add_argument("--out", type=Path, help="folder for the validated (clean) tables")
    parser.add_argument("--dataset", help="name under `datasets` in params.yaml (default: the manifest folder's name)")
    parser.add_argument("--root", type=Path, help="dataset root (default: the one recorded by ingest)")
    parser.add_argument("--metrics", type=Path, help="write the counts here as JSON (for dvc metrics)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    return parser


def execute(args: argparse.Namespace) -> ValidateResult:
    """The gate as the command line asks; a blocking failure raises :class:`GateFailed` with the summary."""
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    name = args.dataset or args.manifest_dir.name
    params = load_params(args.params)
    if args.dataset is not None:
        dataset_spec(params, args.dataset)  # named, so it must be listed
    on_fail, cache, workers = settings(params)
    manifest = read_manifest_dir(args.manifest_dir, root=args.root, allow_empty=True)  # read once, checked by run()
    cfg = config_from_params(params, name, args.task, manifest.source)
    with open_workers(DaskSettings.from_params(params), workers) as pool:
        result, results = run(manifest, cfg, args.report, args.out, on_fail, args.root, cache, pool, name)
    if args.metrics:
        write_json(args.metrics, result.metrics())
    summary = format_summary(result, results, args.report)
    if not result.passed:
        raise GateFailed(summary)
    print(summary)
    return result


def main(argv: list[str] | None = None) -> int:
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
