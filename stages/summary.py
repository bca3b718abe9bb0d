"""Print what the pipeline did: one line per dataset, at most 100 columns (the end of ``make run``).

The register and validate stages and their paths come from dvc.yaml, parsed with those stages' own
command lines, so the summary reads exactly what they wrote.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from cvpipe.core import cli
from cvpipe.core.params import load_params, mapping
from cvpipe.core.pipeline import resolve
from cvpipe.report import summary
from stages import register, validate


@dataclass(frozen=True)
class Located:
    """Where one dataset's stages wrote, as their dvc.yaml commands say (paths relative to the project)."""

    dataset: str
    task: str
    stage: str  # the register stage's name in dvc.lock (``register@<dataset>``)
    gate_metrics: Path | None  # stages.validate --metrics: the gate's counts
    gate_report: Path | None  # stages.validate --report: summary.json and the Data Docs
    validated: Path  # stages.validate --out (quarantine.csv), the register stage's --manifest-dir
    eval_dir: Path
    register_json: Path


def locate(root: Path = Path("."), params_file: Path | None = None) -> list[Located]:
    """One entry per register stage of ``root/dvc.yaml`` (with ``params_file``, default params.yaml), with the validate
    stage that wrote its manifest; only the datasets the parameters list under ``datasets`` (an overlay's task sections
    also hold its base's)."""
    stages = resolve(root, params_file)  # first: a missing dvc.yaml is the error to name
    params_file = Path(params_file) if params_file is not None else root / "params.yaml"
    listed = set(mapping(load_params(params_file).get("datasets"), "datasets"))
    gates = {}
    for spec in stages:
        if spec.module == "stages.validate":
            args = validate.get_args_parser().parse_args(spec.args)
            if args.out is not None:
                gates[Path(args.out)] = args
    found = []
    for spec in stages:
        if spec.module != "stages.register":
            continue
        args = register.get_args_parser().parse_args(spec.args)
        if args.dataset not in listed:
            continue
        gate = gates.get(Path(args.manifest_dir))
        found.append(Located(args.dataset, gate.task if gate else "?", spec.name, gate.metrics if gate else None,
                             gate.report if gate else None, Path(args.manifest_dir), Path(args.eval_dir), Path(args.out)))
    return found


def run(root: Path = Path("."), params_file: Path | None = None) -> list[str]:
    """The summary's lines for the project at ``root`` (its datasets: those of ``params_file``)."""
    lines = []
    for found in locate(root, params_file):
        gate_json = root / found.gate_metrics if found.gate_metrics is not None else None
        lines.append(summary.read(found.dataset, found.task, gate_json, root / found.register_json, root / found.eval_dir))
    return summary.table(lines)


def get_args_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m stages.summary``."""
    parser = argparse.ArgumentParser(prog="python -m stages.summary", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="the project folder (default: here)")
    parser.add_argument("--params", type=Path, help="whose datasets (default: the project's params.yaml)")
    return parser


def execute(args: argparse.Namespace) -> list[str]:
    lines = run(args.root, args.params)
    print("\n".join(lines))
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m stages.summary``: 0, or 1 with one error line."""
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    raise SystemExit(main())
