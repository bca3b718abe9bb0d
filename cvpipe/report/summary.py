"""The end of ``make run``: one line per dataset, then where to look next.

Built from what the stages wrote: the gate's counts (``reports/validate/<dataset>.json``), each register
stage's JSON (model, version, alias, the promotion metric and score, the champion it was compared with)
and its evaluation's ``metrics.json`` (how many held-out images it was scored on). Every line fits in
:data:`WIDTH` columns; ``dvc metrics show`` still lists every figure.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

WIDTH = 100
HEADER = ("dataset", "task", "images", "gate", "held-out score", "registry")


@dataclass(frozen=True)
class Gate:
    """The gate's counts for one dataset (``stages.validate --metrics``)."""

    images: int
    kept: int
    quarantined: int
    blocking_failures: int
    warnings: int

    @classmethod
    def read(cls, path: Path | None) -> Gate | None:
        if path is None or not path.is_file():
            return None
        counts = json.loads(path.read_text())
        return cls(*(int(counts.get(key) or 0) for key in ("images", "kept_images", "quarantined_images", "blocking_failures",
                                                           "warnings")))

    @property
    def verdict(self) -> str:
        if self.blocking_failures:
            return f"FAILED ({self.blocking_failures})"
        if self.quarantined:
            return f"{self.quarantined} quarantined"
        return f"passed, {self.warnings} warn" if self.warnings else "passed"


@dataclass(frozen=True)
class ModelLine:
    """One dataset: its gate, and what its register stage recorded (``model=None`` when not registered yet)."""

    dataset: str
    task: str
    eval_dir: str
    gate: Gate | None = None
    model: str | None = None
    version: str = ""
    metric: str = ""
    score: float | None = None
    images: int | None = None
    promoted: bool = False
    alias: str = ""
    champion_version: str | None = None
    champion_score: float | None = None


def read(dataset: str, task: str, gate_json: Path | None, register_json: Path, eval_dir: Path) -> ModelLine:
    """The line for ``dataset`` from the gate's counts, its register JSON and ``eval_dir/metrics.json`` (any may be missing)."""
    gate = Gate.read(gate_json)
    if not register_json.is_file():
        return ModelLine(dataset, task, str(eval_dir), gate)
    reg = json.loads(register_json.read_text())
    metrics_file = eval_dir / "metrics.json"
    images = json.loads(metrics_file.read_text()).get("images") if metrics_file.is_file() else None
    return ModelLine(dataset, task, str(eval_dir), gate, reg.get("model_name"), str(reg.get("version", "")),
                     reg.get("metric", ""), reg.get("score"), images if isinstance(images, int) else None,
                     bool(reg.get("promoted")), reg.get("alias", ""), reg.get("champion_version"), reg.get("champion_score"))


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _registry(line: ModelLine) -> str:
    if line.model is None:
        return "not registered" if line.gate and line.gate.blocking_failures else "not registered yet"
    version = f"v{line.version}"
    if line.promoted:
        return f"{version} @champion (promoted)"
    if line.score is None:  # the split cannot define the metric: the register JSON's reason says why
        return f"{version} @{line.alias or 'challenger'} (no score)"
    if line.champion_version:
        return f"{version} @{line.alias or 'challenger'} (v{line.champion_version}: {_score(line.champion_score)})"
    return f"{version} @{line.alias}" if line.alias else version


def _clip(text: str) -> str:
    return text if len(text) <= WIDTH else text[: WIDTH - 1] + "…"


def _columns(rows: list[tuple[str, ...]], right: frozenset[int] = frozenset({2})) -> list[str]:
    """Rows of cells, each column padded to its widest cell (numbers right-aligned; the last column not padded)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    cells = [[cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row[:-1], widths, strict=True))]
             for row in rows]
    return [("  " + "  ".join(padded) + "  " + row[-1]).rstrip() for padded, row in zip(cells, rows, strict=True)]


def table(lines: list[ModelLine]) -> list[str]:
    """The summary, each line at most :data:`WIDTH` columns."""
    if not lines:
        return ["No register stage in dvc.yaml: nothing was registered."]
    done = [line for line in lines if line.model is not None]
    rows = [HEADER] + [(line.dataset, line.task,
                        str(line.images) if line.images is not None else "-",
                        line.gate.verdict if line.gate else "not run",
                        f"{line.metric} {_score(line.score)}" if line.model else "-",
                        _registry(line)) for line in lines]
    models = "model" if len(lines) == 1 else "models"
    head = f"{len(done)} of {len(lines)} {models}" if len(done) < len(lines) else f"{len(lines)} {models}"
    out = [f"{head} registered in MLflow; images and score: each model's held-out split"]
    out += _columns(rows)
    if any(not line.promoted and line.champion_version for line in done):
        out.append("(vN: score): not promoted; version N stays @champion, with that score")
    if done:
        out += textwrap.wrap("Models: " + ", ".join(line.model for line in done if line.model), WIDTH, subsequent_indent="  ",
                             break_on_hyphens=False)
    out += ["Pictures: reports/evaluate/<dataset>/ (confusion matrix, per-class scores, mistakes, Grad-CAM)",
            "Look further: make ui    make report    dvc metrics show reports/evaluate/<dataset>/metrics.json"]
    return [_clip(text) for text in out]
