"""Generate the embedded sample datasets in their native layouts (deterministic from a seed).

    python -m stages.samples --out data/raw [--dataset NAME ...] [--seed 0] [--force]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cvpipe.core import cli
from cvpipe.core.errors import ParamsError
from cvpipe.core.params import load_params, lookup, mapping, number
from cvpipe.sources import SOURCES
from cvpipe.sources.samples import generate
from cvpipe.tasks import dataset_spec

log = logging.getLogger(__name__)


def run(datasets: dict[str, str], out: Path, seed: int = 0, force: bool = False) -> list[str]:
    """Write each ``name -> source`` sample to ``out/<name>`` unless it is there; return those written."""
    for name, source in datasets.items():
        if source not in SOURCES:
            raise ParamsError(f"datasets.{name}.source", f"is {source!r}; sample data exists for {', '.join(SOURCES)}")
    written = []
    for name, source in datasets.items():
        target = out / name
        if target.exists() and not force:
            log.info("%s: %s exists, kept (use --force to regenerate)", name, target)
            continue
        generate(source, target, seed)
        log.info("%s: sample written to %s", name, target)
        written.append(name)
    return written


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stages.samples", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/raw"))
    parser.add_argument("--dataset", action="append", help="a dataset under `datasets` in params.yaml (repeatable); default: all")
    parser.add_argument("--seed", type=int, help="default: samples.seed in params.yaml")
    parser.add_argument("--force", action="store_true", help="regenerate datasets already present")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    return parser


def execute(args: argparse.Namespace) -> list[str]:
    params = load_params(args.params)
    chosen = {name: dataset_spec(params, name)["source"] for name in (args.dataset or mapping(params.get("datasets"), "datasets"))}
    seed = args.seed if args.seed is not None else number(lookup(params, "samples.seed", 0), "samples.seed", integer=True)
    return run(chosen, args.out, seed, args.force)


def main(argv: list[str] | None = None) -> int:
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
