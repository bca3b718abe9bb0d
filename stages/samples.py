"""Generate the embedded sample datasets in their native layouts (deterministic from a seed).

    python -m stages.samples --out data/raw [--dataset NAME ...] [--seed 0] [--force]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cvpipe.params import load_params
from cvpipe.samples import generate

log = logging.getLogger(__name__)


def run(datasets: dict[str, str], out: Path, seed: int = 0, force: bool = False) -> list[str]:
    """Write each ``name -> source`` sample to ``out/<name>`` unless it is there; return those written."""
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


def main(argv: list[str] | None = None) -> int:
    params = load_params()
    all_datasets = {name: d["source"] for name, d in params["datasets"].items()}
    parser = argparse.ArgumentParser(prog="python -m stages.samples", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/raw"))
    parser.add_argument("--dataset", action="append", choices=sorted(all_datasets), help="default: all")
    parser.add_argument("--seed", type=int, default=params["samples"]["seed"])
    parser.add_argument("--force", action="store_true", help="regenerate datasets already present")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    chosen = {n: all_datasets[n] for n in (args.dataset or all_datasets)}
    run(chosen, args.out, args.seed, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
