"""The one error path of every entry point: an expected failure is one ``error: ...`` line and exit 1.

A stage module defines ``get_args_parser()`` and ``execute(args)`` (which raises
:class:`~cvpipe.core.errors.CvpipeError` on bad input); its ``main(argv)`` is ``cli.main(...)`` of both.
The Prefect flow calls ``execute`` on the same parsed arguments, so both front ends run one body of
code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cvpipe.core.errors import CvpipeError, ParamsError


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (argparse names the option and exits 2 otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def located(exc: CvpipeError, args: argparse.Namespace) -> CvpipeError:
    """A params error names the file given with ``--params`` (checks deep down only know the key)."""
    params = getattr(args, "params", None)
    if isinstance(exc, ParamsError) and params is not None and exc.file == Path("params.yaml"):
        return exc.in_file(params)
    return exc


def report(exc: CvpipeError) -> int:
    """Print ``error: <what>`` on stderr; the exit code of an expected failure."""
    print(f"error: {exc}", file=sys.stderr)
    return 1


def parse(parser: argparse.ArgumentParser, argv: list[str], params_file: Path | None = None) -> argparse.Namespace:
    """A stage's arguments from its command line (as dvc.yaml writes it); a stage that takes ``--params`` and was not
    given one reads ``params_file`` (another front end, such as the Prefect flow, chose the file)."""
    if params_file is not None and "--params" not in argv:
        args, unknown = parser.parse_known_args([*argv, "--params", str(params_file)])
        if not unknown:
            return args
    return parser.parse_args(argv)  # also what names a bad option (argparse exits 2)


def main(parser: argparse.ArgumentParser, execute: Callable[[argparse.Namespace], Any], argv: list[str] | None = None) -> int:
    """Parse ``argv`` (argparse names a bad option and exits 2), run ``execute``; 0, or 1 with one line."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        execute(args)
    except CvpipeError as exc:
        return report(located(exc, args))
    return 0
