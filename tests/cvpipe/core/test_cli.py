"""cli.parse: a stage's command line as another front end (the Prefect flow) parses it, with its params file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cvpipe.core import cli


def parser_with(*options: tuple[str, object]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stage")
    parser.add_argument("kind")
    parser.add_argument("--out", type=Path, required=True)
    for name, default in options:
        parser.add_argument(name, type=Path, default=default)
    return parser


@pytest.mark.parametrize("default", [Path("params.yaml"), None])
def test_a_stage_that_takes_params_reads_the_file_the_front_end_chose(default):
    args = cli.parse(parser_with(("--params", default)), ["voc", "--out", "o"], Path("other.yaml"))
    assert (args.kind, args.out, args.params) == ("voc", Path("o"), Path("other.yaml"))


def test_a_params_file_on_the_command_line_wins_and_a_stage_without_params_gets_none():
    given = cli.parse(parser_with(("--params", None)), ["voc", "--params", "mine.yaml", "--out", "o"], Path("other.yaml"))
    assert given.params == Path("mine.yaml")
    plain = cli.parse(parser_with(), ["voc", "--out", "o"], Path("other.yaml"))
    assert vars(plain) == {"kind": "voc", "out": Path("o")}


def test_a_bad_option_is_still_argparse_s_error():
    with pytest.raises(SystemExit) as exited:
        cli.parse(parser_with(("--params", None)), ["voc", "--out", "o", "--nope", "1"], Path("other.yaml"))
    assert exited.value.code == 2
