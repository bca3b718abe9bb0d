"""Expected failures, one hierarchy: each names what was wrong, where, and what would be valid.

Every ``python -m stages.*`` and ``python -m flows.*`` entry point turns a :class:`CvpipeError` into
one ``error: ...`` line and exit code 1 (:mod:`cvpipe.core.cli`); anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

from pathlib import Path


class CvpipeError(Exception):
    """An expected failure: bad input, bad parameters, a stage that cannot go on."""


class DataError(CvpipeError):
    """Bad or unreadable input data: names the offending path and what is wrong with it."""

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.message = message
        self.line = line
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {message}")


class ParamsError(CvpipeError, ValueError):
    """A parameter of the wrong type, range or name: names the params key and what is allowed."""

    def __init__(self, key: str, message: str, file: str | Path = "params.yaml") -> None:
        self.key, self.message, self.file = key, message, Path(file)
        super().__init__(f"{self.file}: {key}: {message}" if key else f"{self.file}: {message}")

    def in_file(self, file: str | Path) -> ParamsError:
        """The same error, naming the params file it was read from."""
        return ParamsError(self.key, self.message, file)

    def under(self, prefix: str, file: str | Path | None = None) -> ParamsError:
        """The same error with the key's section in front (``optimizer`` -> ``classification.datasets.x.optimizer``)."""
        key = f"{prefix}.{self.key}" if self.key else prefix
        return ParamsError(key, self.message, file if file is not None else self.file)


class TrainingError(CvpipeError, RuntimeError):
    """Training cannot go on (a non-finite loss, an unusable checkpoint): says what and what to try."""


class GateFailed(CvpipeError):
    """The data gate stopped a dataset; the message is the gate's one-screen summary."""


class UsageError(CvpipeError, ValueError):
    """Command-line options that do not go together (argparse handles single options)."""
