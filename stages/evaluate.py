"""Evaluate: the trained model on the held-out split; metrics, confusion matrices and pictures.

    python -m stages.evaluate --dataset NAME --model-dir models/NAME --data-dir DIR --out reports/evaluate/NAME
    python -m stages.evaluate SCORER --truth solution.csv --submission submission.csv [--per-image scores.csv]

The second form scores a competition submission file against its solution file, as people score
their submissions locally (scorers: :data:`cvpipe.tasks.SCORERS`); a malformed row is named by its line.

The dataset's task decides the reports written under OUT; every task writes ``metrics.json``
(``dvc metrics show/diff``) and the reports its own evaluation writes (README: each task's "Evaluate").
A split that cannot define the primary metric (a held-out split with no object, or no nucleus) is no
error: metrics.json holds the metric as null and why under ``undefined``, and a warning line says so.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvpipe.core import cli
from cvpipe.core.cpu import pin_kernels, pinned
from cvpipe.core.io import write_json, write_text
from cvpipe.core.params import load_params
from cvpipe.tasks import (
    SCORERS,
    UNDEFINED,
    Compute,
    dataset_task,
    evaluate_settings,
    get_scorer,
    get_task,
    trained_config,
    undefined_reason,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluateResult:
    """What one evaluation found: the split, its image count and the task's primary metric (all of metrics.json too);
    ``primary`` is None where the split cannot define it, and ``undefined`` says why."""

    split: str
    images: int
    primary_metric: str
    primary: float | None
    metrics: dict
    undefined: str | None = None


def run(task: str, model_dir: Path, data_dir: Path, out: Path, settings: Any, compute: Compute, split: str = "test",
        title: str | None = None) -> EvaluateResult:
    """Score ``task``'s model in ``model_dir`` (trained as its train.json says) on ``split`` of ``data_dir``; write its
    reports and ``metrics.json`` to ``out``. ``settings``: the task's evaluate settings (``Task.evaluate_settings``)."""
    implementation = get_task(task)
    config = trained_config(implementation, model_dir)
    metrics = implementation.evaluate(model_dir, data_dir, out, split, config, settings, compute, title or data_dir.name)
    key = implementation.primary_metric
    undefined = undefined_reason(metrics, key)
    if undefined is not None:  # null with its reason, never NaN (not JSON) nor a number the gate would rank
        metrics = metrics | {key: None, UNDEFINED: undefined}
    write_json(out / "metrics.json", metrics)
    primary = None if undefined is not None else float(metrics[key])
    return EvaluateResult(str(metrics.get("split", split)), int(metrics.get("images", 0)), key, primary, metrics, undefined)


def get_args_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m stages.evaluate`` (the dataset form)."""
    parser = argparse.ArgumentParser(prog="python -m stages.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a dataset listed in params.yaml")
    parser.add_argument("--model-dir", type=Path, required=True, help="the trained model folder (models/<dataset>)")
    parser.add_argument("--data-dir", "--manifest-dir", dest="manifest_dir", type=Path, required=True,
                        help="what the task reads (the validated manifest, or the converted YOLO folder)")
    parser.add_argument("--out", type=Path, required=True, help="the reports folder to write (reports/evaluate/<dataset>)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    return parser


def execute(args: argparse.Namespace, params: dict[str, Any] | None = None) -> EvaluateResult:
    """Run the stage on parsed arguments; ``params``: params.yaml already read (else read from ``--params``)."""
    params = load_params(args.params) if params is None else params
    pin_kernels(pinned(params))  # before any tensor work: the same bytes on every x86-64 CPU
    compute = Compute.from_params(params)
    task = dataset_task(params, args.dataset)
    settings = evaluate_settings(params, task)
    result = run(task, args.model_dir, args.manifest_dir, args.out, settings, compute, args.split, args.dataset)
    if result.undefined is not None:
        log.warning("warning: %s on %s (%d images): %s is undefined: %s; register will not promote on it", args.dataset,
                    result.split, result.images, result.primary_metric, result.undefined)
    else:
        log.info("%s on %s (%d images): %s %.3f", args.dataset, result.split, result.images, result.primary_metric, result.primary)
    return result


def scorer_parser(name: str) -> argparse.ArgumentParser:
    """The command line of ``python -m stages.evaluate <scorer>``."""
    parser = argparse.ArgumentParser(prog=f"python -m stages.evaluate {name}", description="Score a submission file against "
                                     "a solution file in the competition's format")
    parser.set_defaults(scorer=name)
    parser.add_argument("--truth", type=Path, required=True, help="the solution CSV (the run-length encoded true objects)")
    parser.add_argument("--submission", type=Path, required=True, help="the submission CSV")
    parser.add_argument("--per-image", type=Path, help="write each image's score here (CSV)")
    return parser


def execute_scorer(args: argparse.Namespace):
    """Score the submission file; print the score (and write each image's with ``--per-image``)."""
    result = get_scorer(args.scorer)(args.truth, args.submission)
    if args.per_image:
        rows = "".join(f"{image},{score:.6f}\n" for image, score in sorted(result.per_image.items()))
        write_text(args.per_image, "ImageId,score\n" + rows)
    missing = f"; {len(result.missing)} without any row, scored as predicting nothing" if result.missing else ""
    print(f"{args.scorer}: {result.score:.6f} over {result.images} images{missing}")
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m stages.evaluate``: 0, or 1 with one error line."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SCORERS:
        return cli.main(scorer_parser(argv[0]), execute_scorer, argv[1:])
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
