"""Prefect flow: ``python -m stages.predict`` as a flow run, for the UI's Run form and for schedules.

    python -m flows.predict --model NAME[@ALIAS|/VERSION] --images DIR_OR_GLOB [--out DIR] [--batch-size 16]
                            [--device auto] [--explain]

The flow adds orchestration only: it runs the predict stage's ``run`` (the same files, the same
answers) as one task, and publishes a Prefect artifact (key ``predict-<model>``) with the version
used, the counts and where the files are. ``out`` defaults to ``predictions/<NAME>``, as ``make predict``
writes. ``schedules:`` in params.yaml lists it (``predict``, no cron): the deployment then waits in the
Prefect UI for a model and a folder to be typed into its Run form.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed

from cvpipe.core import cli
from cvpipe.core.errors import CvpipeError


def default_out(model: str) -> Path:
    """``predictions/<NAME>`` of ``NAME[@ALIAS|/VERSION]``, as ``make predict`` names it."""
    from cvpipe.mlops.registry import ModelRef

    return Path("predictions") / ModelRef.parse(model).name


@task(name="predict", task_run_name="predict {model}", cache_policy=NO_CACHE)
def predict_task(model: str, images: str, out: Path, batch_size: int, device: str, explain: bool) -> Any:
    """The predict stage's ``run`` and an artifact of what it wrote; bad input is a failed state of one line."""
    from prefect.artifacts import create_markdown_artifact

    from stages.predict import run

    try:
        result = run(model, images, out, batch_size, device, explain)
    except CvpipeError as exc:  # an unknown model, an empty folder: one line, no retry
        return Failed(message=f"predict: {exc}")
    create_markdown_artifact(
        key="predict-" + re.sub(r"[^a-z0-9-]+", "-", result.name.lower()),
        markdown=(f"### {result.name} version {result.version}\n\n| images | rows | skipped | written to |\n|---|---|---|---|\n"
                  f"| {result.images} | {result.rows} | {result.skipped} | `{out}` (predictions.csv, annotated/, overview.png) |\n"),
        description=f"predict {model} on {images}")
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()}


@flow(name="predict", log_prints=True)
def predict(model: str, images: str, out: str | None = None, batch_size: int = 16, device: str = "auto",
            explain: bool = False) -> Any:
    """Predict new images with a registered model (see ``python -m stages.predict``).

    Args:
        model: NAME[@ALIAS|/VERSION] of a registered model, e.g. fruits360-classifier (alias default: champion)
        images: a folder (searched recursively) or a glob of image files, relative to the project
        out: the folder to write (default predictions/<NAME>)
        batch_size: images per forward pass
        device: auto (CUDA when there is one), cpu, cuda or cuda:N
        explain: also write explained/<file>.png (a classifier's Grad-CAM)
    """
    state = predict_task(model, images, Path(out) if out else default_out(model), batch_size, device, explain, return_state=True)
    return Failed(message=state.message) if state.is_failed() else state.result()  # the stage's own line, not "1/1 failed"


def get_args_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m flows.predict``: that of ``python -m stages.predict``, ``--out`` optional."""
    from stages.predict import get_args_parser as stage_parser

    return stage_parser(prog="python -m flows.predict", out_help="the folder to write (default predictions/<NAME>)")


def execute(args: argparse.Namespace) -> dict[str, Any]:
    state = predict(args.model, args.images, str(args.out) if args.out else None, args.batch_size, args.device, args.explain,
                    return_state=True)
    if not state.is_completed():
        raise CvpipeError((state.message or "predict failed").removeprefix("predict: "))
    return state.result()


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.predict``: 0, or 1 with one error line."""
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
