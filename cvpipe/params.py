"""``params.yaml``: read once, at an entry point, and passed down as plain arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cvpipe.errors import DataError

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The parsed ``params.yaml``; a missing or malformed file is a one-line error naming it."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "parameters file not found (run from the repository root)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DataError(path, f"malformed YAML: {getattr(exc, 'problem', exc)}", mark.line + 1 if mark else None) from exc
    if not isinstance(data, dict):
        raise DataError(path, "expected a mapping of sections at the top level")
    return data


def dataset_task(params: dict[str, Any], dataset: str) -> str:
    """The task of a dataset listed under ``datasets``; an unlisted one is a clear error."""
    spec = params.get("datasets", {}).get(dataset)
    if spec is None:
        raise ValueError(f"dataset {dataset!r} is not listed under `datasets` in params.yaml")
    return spec["task"]
