"""``params.yaml``: read once, at an entry point, checked, and passed down as plain arguments.

Every check names the key (``validate.on_fail``, ``classification.datasets.fruits360.epochs``) and
what would be valid, as a :class:`~cvpipe.core.errors.ParamsError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from cvpipe.core.errors import DataError, ParamsError

DEFAULT_PARAMS = Path("params.yaml")
T = TypeVar("T")


def load_params(path: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The parsed ``params.yaml``; a missing or malformed file is a one-line error naming it.

    A file whose top level has ``extends: <file>`` (relative to it) is an overlay: :func:`overlay` of its
    sections over that file's (``params.realdata.yaml`` extends ``params.yaml``).
    """
    return _load(Path(path), ())


def _load(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "parameters file not found (run from the repository root)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DataError(path, f"malformed YAML: {getattr(exc, 'problem', exc)}", mark.line + 1 if mark else None) from exc
    if not isinstance(data, dict):
        raise DataError(path, "expected a mapping of sections at the top level")
    base = data.pop(EXTENDS, None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ParamsError(EXTENDS, f"expected the name of the parameters file this one overrides, got {base!r}", path)
    base_path = path.parent / base
    if base_path.resolve() in {p.resolve() for p in (*seen, path)}:
        raise ParamsError(EXTENDS, f"{base} extends this file again (a cycle)", path)
    return overlay(_load(base_path, (*seen, path)), data)


EXTENDS = "extends"
REPLACED = frozenset({"datasets"})  # top-level sections an overlay states in full


def overlay(base: dict[str, Any], over: dict[str, Any], top: bool = True) -> dict[str, Any]:
    """``over``'s values in place of ``base``'s: mappings merge key by key (``classification.datasets`` gains the
    overlay's datasets), anything else is replaced (lists included); the top-level ``datasets``, the list of what
    runs, is replaced whole, so an overlay runs its own datasets and none of the base's."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and not (top and key in REPLACED):
            merged[key] = overlay(base[key], value, top=False)
        else:
            merged[key] = value
    return merged


def lookup(params: dict[str, Any], key: str, default: Any = ...) -> Any:
    """The value at a dotted key (``train.device``); without a default, a missing key is an error."""
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is not ...:
                return default
            raise ParamsError(key, "missing")
        node = node[part]
    return node


def mapping(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ParamsError(key, f"must be a mapping of keys to values, not {type(value).__name__} {value!r}")
    return value


def check_keys(section: dict[str, Any], known: Iterable[str], key: str = "") -> None:
    """An unknown key is an error that lists the known ones (a typo never silently does nothing)."""
    known = list(known)
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ParamsError(f"{key}.{unknown[0]}" if key else unknown[0], f"unknown key; known keys: {', '.join(sorted(known))}")


def number(value: Any, key: str, *, integer: bool = False, minimum: float | None = None, above: float | None = None,
           below: float | None = None) -> int | float:
    """A number of the right kind and range; ``"3"``, ``true`` or ``fast`` are named, never coerced."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ParamsError(key, f"must be {kind}, not {value!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ParamsError(key, f"must be a finite number, not {value!r}")
    if minimum is not None and value < minimum:
        raise ParamsError(key, f"must be {kind} >= {minimum}, not {value!r}")
    if above is not None and not value > above:
        raise ParamsError(key, f"must be {kind} > {above}, not {value!r}")
    if below is not None and not value < below:
        raise ParamsError(key, f"must be {kind} < {below}, not {value!r}")
    return value


def choice(value: Any, key: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise ParamsError(key, f"is {value!r}; choose one of {', '.join(map(str, choices))}")
    return value


def flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ParamsError(key, f"must be true or false, not {value!r}")
    return value


def string_list(value: Any, key: str) -> list[str]:
    """A YAML list of strings (``modes: [RGB]``); a bare string is an error, not a list of letters."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ParamsError(key, f"must be a list of strings such as [{value}], not {value!r}" if isinstance(value, str)
                          else f"must be a list of strings, not {value!r}")
    return value


def training_settings(params: dict[str, Any]) -> tuple[str, Path | None]:
    """(device, cache folder) from the ``train`` section, shared by every task's train and evaluate."""
    common = mapping(params.get("train"), "train")
    check_keys(common, ("device", "cache_dir", "cpu_threads", "cpu_pin"), "train")
    device = device_setting(common.get("device", "auto"))
    cache = common.get("cache_dir")
    if cache is not None and not isinstance(cache, str):
        raise ParamsError("train.cache_dir", f"must be a folder path or null, not {cache!r}")
    return device, Path(cache) if cache else None


def device_setting(value: Any) -> str:
    """``train.device`` as one string: ``auto``, ``cpu``, ``mps``, ``cuda``, ``cuda:N``, or ``cuda:0,1`` for
    several CUDA devices (written ``[0, 1]``, ``"0,1"`` or ``"cuda:0,1"``, as ultralytics takes them)."""
    if isinstance(value, str) and (value in ("auto", "cpu", "mps", "cuda") or re.fullmatch(r"cuda:\d+", value)):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, str) and re.fullmatch(r"(cuda:)?\d+(,\d+)*", value.replace(" ", "")):
        value = [int(i) for i in value.replace(" ", "").removeprefix("cuda:").split(",")]
    if not (isinstance(value, list) and value and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value)):
        raise ParamsError("train.device", f"is {value!r}; choose auto, cpu, cuda or cuda:N, or several CUDA devices "
                                          "as a list ([0, 1] or \"0,1\")")
    if len(set(value)) < len(value):
        raise ParamsError("train.device", f"is {value!r}; each CUDA device may be listed once")
    return "cuda:" + ",".join(map(str, value))


def cpu_threads(params: dict[str, Any]) -> int:
    """``train.cpu_threads``: the threads torch computes with on the CPU. Fixed, because float sums
    split over another number of threads round differently, and the trained bytes would then depend on
    the machine's cores or on an ``OMP_NUM_THREADS`` that some library set (importing ultralytics sets 1)."""
    common = mapping(params.get("train"), "train")
    return int(number(common.get("cpu_threads", 2), "train.cpu_threads", integer=True, minimum=1))


@dataclass(frozen=True)
class RegistrySettings:
    """The promotion gate's ``registry`` section (stages/register.py says what each does)."""

    min_delta: float = 0.0
    tolerance: float = 0.05
    confidence: float = 0.95
    resamples: int = 1000
    seed: int = 0
    wait_s: float = 900.0


def registry_settings(params: dict[str, Any]) -> RegistrySettings:
    """The promotion gate's settings, from the ``registry`` section (unknown keys and bad values named)."""
    return number_settings(params, "registry", RegistrySettings, {
        "min_delta": {"minimum": 0}, "tolerance": {"minimum": 0}, "confidence": {"above": 0, "below": 1},
        "resamples": {"integer": True, "minimum": 10}, "seed": {"integer": True, "minimum": 0}, "wait_s": {"minimum": 0}})


def number_settings(params: dict[str, Any], name: str, cls: type[T], rules: dict[str, dict[str, Any]]) -> T:
    """The frozen dataclass ``cls`` from section ``name``, every field a number checked by :func:`number` with its
    ``rules`` (a field whose default is None may also be null); unknown keys and bad values named."""
    section = mapping(params.get(name), name)
    check_keys(section, [f.name for f in fields(cls)], name)
    default = cls()
    values: dict[str, Any] = {}
    for f in fields(cls):
        value, rule = section.get(f.name, getattr(default, f.name)), rules[f.name]
        if value is None and getattr(default, f.name) is None:
            values[f.name] = None
            continue
        checked = number(value, f"{name}.{f.name}", **rule)
        values[f.name] = int(checked) if rule.get("integer") else float(checked)
    return cls(**values)


@dataclass(frozen=True)
class LabelSettings:
    """The label-error queue (``python -m stages.labels``): ``folds`` out-of-fold models, each trained as the dataset's
    own training config says but for ``epochs`` (None: as many), and the ``top`` suspects kept, folds drawn by ``seed``."""

    folds: int = 3
    epochs: int | None = None
    top: int = 50
    seed: int = 0


def label_settings(params: dict[str, Any]) -> LabelSettings:
    """The ``labels`` section, checked (unknown keys and bad values named)."""
    return number_settings(params, "labels", LabelSettings, {
        "folds": {"integer": True, "minimum": 2}, "epochs": {"integer": True, "minimum": 1},
        "top": {"integer": True, "minimum": 1}, "seed": {"integer": True, "minimum": 0}})
