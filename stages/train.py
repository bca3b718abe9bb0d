"""Train: a model for one dataset from its validated manifest, with the settings in params.yaml.

    python -m stages.train --dataset NAME --data-dir DIR --out models/NAME

The dataset's task (``datasets.<name>.task``) decides what trains, with the dataset's section
``<task>.datasets.<name>``; device and cache folder come from ``train``. Writes the task's model,
``history.csv`` (one row per epoch) and ``train.json`` (summary, parameters, content digests) to OUT.
Resumable: a checkpoint under the cache folder, keyed by the data, the parameters and the code,
lets an interrupted run continue from its last finished epoch.

Several GPUs (``train.device: [0, 1]``): ultralytics starts its own processes; the torch trainers
run one process per device under torchrun, and say so when started
without it:

    torchrun --nproc-per-node 2 -m stages.train --dataset NAME --data-dir DIR --out models/NAME
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from cvpipe.core import cli
from cvpipe.core.cpu import pin_kernels, pinned
from cvpipe.core.errors import ParamsError
from cvpipe.core.io import write_json
from cvpipe.core.params import load_params
from cvpipe.tasks import Compute, TrainResult, get_task, task_section

log = logging.getLogger(__name__)


def run(task: str, data_dir: Path, out: Path, config: Any, compute: Compute, stop_after: int | None = None) -> TrainResult:
    """Train ``task``'s model on ``data_dir`` with ``config`` (the task's training config) and write it to ``out``."""
    return get_task(task).train(data_dir, out, config, compute, stop_after)


def get_args_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m stages.train``."""
    parser = argparse.ArgumentParser(prog="python -m stages.train", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a dataset listed in params.yaml")
    parser.add_argument("--data-dir", "--manifest-dir", dest="manifest_dir", type=Path, required=True,
                        help="what the task reads (the validated manifest, or the converted YOLO folder)")
    parser.add_argument("--out", type=Path, required=True, help="the model folder to write (models/<dataset>)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--metrics", type=Path, help="write the summary here as JSON (for dvc metrics)")
    return parser


def execute(args: argparse.Namespace, params: dict[str, Any] | None = None) -> TrainResult:
    """Run the stage on parsed arguments; ``params``: params.yaml already read (else read from ``--params``)."""
    params = load_params(args.params) if params is None else params
    pin_kernels(pinned(params))  # before any tensor work: the same bytes on every x86-64 CPU
    task, section = task_section(params, args.dataset)
    compute = Compute.from_params(params)
    from cvpipe.tasks.training import Ranks, TorchrunRequired  # torch, only when a stage really runs

    try:
        result = run(task, args.manifest_dir, args.out, get_task(task).train_config(section), compute)
    except TorchrunRequired as exc:
        raise exc.running(command_line(args)).in_file(args.params) from None
    except ParamsError as exc:  # a key of the dataset's section, or train.device
        if exc.key.startswith("train."):
            raise exc.in_file(args.params) from None
        raise exc.under(f"{task}.datasets.{args.dataset}", args.params) from None
    if not Ranks.from_env().main:  # under torchrun rank 0 reports
        return result
    if args.metrics:
        write_json(args.metrics, {"epochs": result.epochs, "best_epoch": result.best_epoch} | result.metrics)
    figures = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items())
    log.info("trained %s (%s): best epoch %d of %d, %s (%s, %.0f s)", args.dataset, result.model, result.best_epoch,
             result.epochs, figures, result.device, result.seconds)
    return result


def command_line(args: argparse.Namespace) -> str:
    """``-m stages.train`` with the options given (what torchrun is to run)."""
    options = {"--dataset": args.dataset, "--data-dir": args.manifest_dir, "--out": args.out,
               "--params": args.params if args.params != Path("params.yaml") else None, "--metrics": args.metrics}
    return shlex.join(["-m", "stages.train", *(x for k, v in options.items() if v is not None for x in (k, str(v)))])


def main(argv: list[str] | None = None) -> int:
    """``python -m stages.train``: 0, or 1 with one error line."""
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
