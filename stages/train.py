"""Train: a model for one dataset from its validated manifest, with the settings in params.yaml.

    python -m stages.train --dataset fruits360 [--manifest-dir data/validated/fruits360] [--out models/fruits360]

The dataset's task (``datasets.<name>.task``) decides what trains, with the dataset's section
``<task>.datasets.<name>``; device and cache folder come from ``train``. Writes the task's model,
``history.csv`` (one row per epoch) and ``train.json`` (summary, parameters, content digests) to OUT.
Resumable: a checkpoint under the cache folder, keyed by the data, the parameters and the code,
lets an interrupted run continue from its last finished epoch.

Several GPUs (``train.device: [0, 1]``): ultralytics starts its own processes; the torch trainers
(classification, segmentation) run one process per device under torchrun, and say so when started
without it:

    torchrun --nproc-per-node 2 -m stages.train --dataset fruits360
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from cvpipe.core import cli
from cvpipe.core.errors import ParamsError
from cvpipe.core.io import write_json
from cvpipe.core.params import cpu_threads, load_params, training_settings
from cvpipe.tasks import TrainResult, get_task, task_section

log = logging.getLogger(__name__)


def run(
    task: str,
    manifest_dir: Path,
    out: Path,
    params: dict,
    device: str = "auto",
    cache_dir: Path | None = Path(".cache/cvpipe"),
    stop_after: int | None = None,
) -> TrainResult:
    """Train ``task``'s model on ``manifest_dir``; ``params`` is the dataset's training section."""
    return get_task(task).train(manifest_dir, out, params, device, cache_dir, stop_after)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stages.train", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a dataset listed in params.yaml")
    parser.add_argument("--data-dir", "--manifest-dir", dest="manifest_dir", type=Path,
                        help="what the task reads (default: <the task's data_root>/<dataset>)")
    parser.add_argument("--out", type=Path, help="default: models/<dataset>")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--metrics", type=Path, help="write the summary here as JSON (for dvc metrics)")
    return parser


def execute(args: argparse.Namespace) -> TrainResult:
    params = load_params(args.params)
    task, section = task_section(params, args.dataset)
    device, cache_dir = training_settings(params)
    from cvpipe.tasks.training import Ranks, TorchrunRequired, set_cpu_threads  # torch, only when a stage really runs

    set_cpu_threads(cpu_threads(params))
    try:
        result = run(task, args.manifest_dir or Path(get_task(task).data_root) / args.dataset, args.out or Path("models") / args.dataset,
                     section, device, cache_dir)
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
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
