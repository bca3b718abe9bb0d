"""What the gate works with: its configuration, the tables it checks, a check and a check's result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from cvpipe.data.decode import DecodeStats

SPLIT_ORDER = {"train": 0, "unsplit": 0, "val": 1, "test": 2}
MAX_EXAMPLES = 20


@dataclass(frozen=True)
class GateConfig:
    """Thresholds and policies of the gate (``validate`` and ``datasets.<name>`` in params.yaml)."""

    task: str
    source: str
    modes: tuple[str, ...] = ("RGB",)
    min_width: int = 16
    min_height: int = 16
    min_images_per_class: int = 5
    max_imbalance_ratio: float = 20.0
    box_tolerance: float = 1.0
    warn: frozenset[str] = frozenset()


@dataclass
class Frames:
    """The tables the suites run on."""

    images: pd.DataFrame
    classes: pd.DataFrame
    boxes: pd.DataFrame | None = None
    masks: pd.DataFrame | None = None
    splits: pd.DataFrame | None = None
    decode: DecodeStats = field(default_factory=DecodeStats)


@dataclass(frozen=True)
class Check:
    """One expectation of the gate: its id, the table it runs on, and why a failing row fails."""

    id: str
    table: str
    expectation: object
    reason: Callable[[dict], str]


@dataclass
class CheckResult:
    check: str
    expectation: str
    table: str
    blocking: bool
    passed: bool
    unexpected_count: int
    examples: list[str]
    rows: list[dict] = field(default_factory=list, repr=False)
    order: int = 0

    def summary(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("rows", "order")}


