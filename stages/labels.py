"""Labels: a queue of the dataset's labels most likely wrong, for a person to check and fix.

    python -m stages.labels --dataset NAME [--data-dir DIR] --out reports/labels/NAME

``labels.folds`` models, each trained as ``<task>.datasets.<name>`` says (``labels.epochs`` where set) on all of the
dataset's images (every split) but one fold, predict the fold they never saw; the dataset's task says which labels those
out-of-fold predictions contradict (``Task.label_review``; README "Finding wrong labels"). OUT receives, as one unit:

- ``queue.csv``: ``rank``, ``image`` (its manifest path), ``problem``, ``evidence``, ``score`` (higher: more
  likely wrong) and ``picture``, the top ``labels.top`` suspects, most likely first;
- ``pictures/<rank>.png`` for each, and ``overview.png``, a contact sheet of the first of them (none when no label is
  suspect);
- what the task exports for a person to correct in the annotator's own format (``Task.queue_export``, such as
  one LabelImg XML per queued image);
- ``queue.json``: the dataset, task, what was reviewed, the settings, how many labels were suspect and what was exported.

DIR defaults to what dvc.yaml's train stage of the dataset trains on (its ``--data-dir``: the validated manifest, or the
converted folder that a task trains from).

Fix a label where the native layout keeps it (the class folder, the annotation file), then ``dvc add`` the raw
folder and ``dvc repro``. A task without a queue yet, or too few images for the folds, is one error line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cvpipe.core import cli
from cvpipe.core.annotate import contact_sheet
from cvpipe.core.cpu import pin_kernels, pinned
from cvpipe.core.errors import ParamsError, UsageError
from cvpipe.core.io import staged_dir, write_bytes, write_json, write_text
from cvpipe.core.params import LabelSettings, label_settings, load_params
from cvpipe.core.plots import csv_text
from cvpipe.tasks import Compute, Suspect, get_task, task_section

log = logging.getLogger(__name__)
COLUMNS = ["rank", "image", "problem", "evidence", "score", "picture"]
OVERVIEW_MAX = 24


@dataclass(frozen=True)
class LabelsResult:
    dataset: str
    task: str
    suspects: int  # found, before ``labels.top``
    queued: int  # in queue.csv
    out: Path


def run(dataset: str, task: str, data_dir: Path, out: Path, config: Any, settings: LabelSettings, compute: Compute) -> LabelsResult:
    """The label-error queue of ``dataset`` (its ``task``, training ``config``) in ``out`` (see the module's docstring)."""
    implementation = get_task(task)
    if implementation.label_review is None:
        raise UsageError(f"{dataset}: the {task} task has no label-error queue yet; only tasks with a label_review do")
    suspects: list[Suspect] = implementation.label_suspects(data_dir, config, settings, compute)
    queued = suspects[: settings.top]
    with staged_dir(out) as staging:
        rows = []
        for rank, suspect in enumerate(queued, 1):
            picture = f"pictures/{rank:04d}.png"
            write_bytes(staging / picture, _png(suspect.picture))
            rows.append({"rank": rank, "image": suspect.image, "problem": suspect.problem, "evidence": suspect.evidence,
                         "score": suspect.score, "picture": picture})
        write_text(staging / "queue.csv", csv_text(rows, COLUMNS))
        exported = {}
        if queued:  # nothing to look at otherwise: queue.json says so
            overview = [(s.picture, f"{rank}. {Path(s.image).name}", s.problem) for rank, s in enumerate(queued[:OVERVIEW_MAX], 1)]
            title = f"{dataset}: {len(queued)} of {len(suspects)} suspect labels, most likely wrong first"
            write_bytes(staging / "overview.png", contact_sheet(overview, title))
            if implementation.queue_export is not None:
                exported = implementation.export_queue(queued, staging)
        write_json(staging / "queue.json", {"dataset": dataset, "task": task, "review": implementation.label_review,
                                            "settings": asdict(settings), "suspects": len(suspects), "queued": len(queued),
                                            "export": implementation.queue_export, "exported": exported})
    return LabelsResult(dataset, task, len(suspects), len(queued), out)


def _png(pixels: Any) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def training_folder(dataset: str, params_file: Path, root: Path = Path(".")) -> Path:
    """The folder dvc.yaml's train stage of ``dataset`` trains on (its ``--data-dir``), so the queue's models read what
    the dataset's own model does (the validated manifest, or a converted folder)."""
    from cvpipe.core.pipeline import resolve

    for spec in resolve(root, params_file):
        if spec.module == "stages.train" and spec.item == dataset and "--data-dir" in spec.args[:-1]:
            return root / spec.args[spec.args.index("--data-dir") + 1]
    raise UsageError(f"{dataset}: dvc.yaml has no train stage of it to take its training folder from; give --data-dir")


def get_args_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m stages.labels``."""
    parser = argparse.ArgumentParser(prog="python -m stages.labels", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a dataset listed in params.yaml")
    parser.add_argument("--data-dir", type=Path, help="what the task trains on (default: the --data-dir of dvc.yaml's train "
                                                      "stage of the dataset)")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write (reports/labels/<dataset>; replaced as one unit)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    return parser


def execute(args: argparse.Namespace, params: dict[str, Any] | None = None) -> LabelsResult:
    """Run the stage on parsed arguments; ``params``: params.yaml already read (else read from ``--params``)."""
    params = load_params(args.params) if params is None else params
    pin_kernels(pinned(params))  # before any tensor work
    try:
        settings = label_settings(params)
    except ParamsError as exc:
        raise exc.in_file(args.params) from None
    task, section = task_section(params, args.dataset)
    compute = Compute.from_params(params)
    try:
        config = get_task(task).train_config(section)
    except ParamsError as exc:
        raise exc.under(f"{task}.datasets.{args.dataset}", args.params) from None
    data_dir = args.data_dir if args.data_dir is not None else training_folder(args.dataset, args.params)
    result = run(args.dataset, task, data_dir, args.out, config, settings, compute)
    log.info("%s: %d suspect labels, %d queued -> %s", args.dataset, result.suspects, result.queued, result.out / "queue.csv")
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m stages.labels``: 0, or 1 with one error line."""
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
