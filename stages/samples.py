"""Generate the embedded sample datasets in their native layouts (deterministic from a seed).

    python -m stages.samples --out data/raw [--dataset NAME ...] [--seed 0] [--force] [--params params.yaml]
        [--scale sample|real|FACTOR] [--workers 2]

``--scale real`` writes sets at the real datasets' size instead (each source's generator says what that is:
counts, image sizes and classes of the real release), ``--scale 0.1`` a tenth of that, for bench/scale.py;
never into data/raw, which DVC versions.

A dataset with a ``path`` (params.realdata.yaml's real extracts) is linked there instead: data/raw/<name>
becomes a link to that folder, whose files are read where they lie.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from cvpipe.core import cli
from cvpipe.core.errors import DataError, ParamsError
from cvpipe.core.params import load_params, lookup, mapping, number
from cvpipe.sources import SOURCES
from cvpipe.sources.samples import generate
from cvpipe.sources.samples.scale import parse_scale
from cvpipe.tasks import dataset_spec

log = logging.getLogger(__name__)


def run(datasets: dict[str, str], out: Path, seed: int = 0, force: bool = False, links: dict[str, Path] | None = None,
        scale: str = "sample", workers: int = 2) -> list[str]:
    """Write each ``name -> source`` sample to ``out/<name>`` unless it is there; return those written. A dataset
    in ``links`` (``datasets.<name>.path``) gets ``out/<name>`` as a link to that folder instead, never a copy.
    ``scale``: the embedded samples, or sets of the real size (``real``) or a share of it (``0.1``)."""
    links = links or {}
    for name, source in datasets.items():
        if source not in SOURCES:
            raise ParamsError(f"datasets.{name}.source", f"is {source!r}; sample data exists for {', '.join(SOURCES)}")
    written = []
    for name, folder in links.items():
        if link(name, folder, out):
            written.append(name)
    for name, source in datasets.items():
        if name in links:
            continue
        target = out / name
        if target.exists() and not force:
            log.info("%s: %s exists, kept (use --force to regenerate)", name, target)
            continue
        generate(source, target, seed, scale, workers)
        log.info("%s: %s written to %s", name, "sample" if scale == "sample" else f"set at scale {scale}", target)
        written.append(name)
    return written


def link(name: str, folder: Path, out: Path) -> bool:
    """``out/name`` as a link to ``folder`` (made atomically); False if it already is one. A real folder there is
    kept and named: nothing of it is replaced."""
    if not folder.is_dir():
        raise ParamsError(f"datasets.{name}.path", f"{folder} is not a folder here")
    target = out / name
    if target.is_symlink():
        if target.resolve() == folder.resolve():
            return False
    elif target.exists():
        raise DataError(target, f"exists and is not a link; move it away to use datasets.{name}.path ({folder})")
    out.mkdir(parents=True, exist_ok=True)
    staged = out / f".{name}.link"
    staged.unlink(missing_ok=True)
    staged.symlink_to(folder.resolve(), target_is_directory=True)
    os.replace(staged, target)
    log.info("%s: %s links to %s", name, target, folder)
    return True


def links_of(params: dict, names) -> dict[str, Path]:
    """``datasets.<name>.path`` of those of ``names`` that have one."""
    return {name: Path(spec["path"]) for name in names if "path" in (spec := dataset_spec(params, name))}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stages.samples", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/raw"))
    parser.add_argument("--dataset", action="append", help="a dataset under `datasets` in params.yaml (repeatable); default: all")
    parser.add_argument("--seed", type=int, help="default: samples.seed in params.yaml")
    parser.add_argument("--force", action="store_true", help="regenerate datasets already present")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--scale", default="sample",
                        help="sample (default), real (the real datasets' counts and image sizes) or a factor of real in (0, 1]")
    parser.add_argument("--workers", type=int, default=2, help="processes writing a scaled set")
    return parser


def execute(args: argparse.Namespace) -> list[str]:
    params = load_params(args.params)
    chosen = {name: dataset_spec(params, name)["source"] for name in (args.dataset or mapping(params.get("datasets"), "datasets"))}
    seed = args.seed if args.seed is not None else number(lookup(params, "samples.seed", 0), "samples.seed", integer=True)
    if args.scale != "sample":
        parse_scale(args.scale)  # a bad value fails before anything is written
        if args.out.resolve() == Path("data/raw").resolve():
            raise ParamsError("--out", f"is data/raw, which DVC versions; give another folder for --scale {args.scale}")
        return run(chosen, args.out, seed, args.force, scale=args.scale, workers=args.workers)
    return run(chosen, args.out, seed, args.force, links_of(params, chosen))


def main(argv: list[str] | None = None) -> int:
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
