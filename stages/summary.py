"""Print what the pipeline registered: one line per model, at most 100 columns (the end of ``make run``).

The register stages and their paths come from dvc.yaml, parsed with ``stages.register``'s own
command line, so the summary reads exactly what those stages wrote.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from cvpipe.core import cli
from cvpipe.core.pipeline import resolve
from cvpipe.report import summary
from stages import register


def run(root: Path = Path(".")) -> list[str]:
    """The summary's lines for the project at ``root``."""
    lines = []
    for spec in resolve(root):
        argv = shlex.split(spec.cmd)
        if argv[:3] != ["python", "-m", "stages.register"]:
            continue
        args = register.get_args_parser().parse_args(argv[3:])
        lines.append(summary.read(args.dataset, root / args.out, root / args.eval_dir))
    return summary.table(lines)


def get_args_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m stages.summary``."""
    parser = argparse.ArgumentParser(prog="python -m stages.summary", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="the project folder (default: here)")
    return parser


def execute(args: argparse.Namespace) -> list[str]:
    lines = run(args.root)
    print("\n".join(lines))
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m stages.summary``: 0, or 1 with one error line."""
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    raise SystemExit(main())
