"""The end of ``make run``: one line per registered model, then where to look next.

Built from each register stage's JSON (model, version, alias, the promotion metric and score, the
champion it was compared with) and its evaluation's ``metrics.json`` (how many images it was scored
on); every line fits in :data:`WIDTH` columns. ``dvc metrics show`` still lists every figure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

WIDTH = 100


@dataclass(frozen=True)
class ModelLine:
    """What one register stage recorded, or ``model=None`` when its JSON is not there yet."""

    dataset: str
    eval_dir: str
    model: str | None = None
    version: str = ""
    metric: str = ""
    score: float | None = None
    images: int | None = None
    promoted: bool = False
    alias: str = ""
    champion_version: str | None = None
    champion_score: float | None = None


def read(dataset: str, register_json: Path, eval_dir: Path) -> ModelLine:
    """The line for ``dataset`` from its register JSON and ``eval_dir/metrics.json`` (either may be missing)."""
    if not register_json.is_file():
        return ModelLine(dataset, str(eval_dir))
    reg = json.loads(register_json.read_text())
    metrics_file = eval_dir / "metrics.json"
    images = json.loads(metrics_file.read_text()).get("images") if metrics_file.is_file() else None
    return ModelLine(dataset, str(eval_dir), reg.get("model_name"), str(reg.get("version", "")), reg.get("metric", ""),
                     reg.get("score"), images if isinstance(images, int) else None, bool(reg.get("promoted")),
                     reg.get("alias", ""), reg.get("champion_version"), reg.get("champion_score"))


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _verdict(line: ModelLine) -> str:
    if line.promoted:
        return "promoted to @champion"
    if line.score is None:  # the split cannot define the metric: the register JSON's reason says why
        return f"@{line.alias or 'challenger'} (no score: see reason in reports/register/)"
    if line.champion_version:
        return f"@{line.alias or 'challenger'} (v{line.champion_version}: {_score(line.champion_score)})"
    return f"@{line.alias}" if line.alias else ""


def _clip(text: str) -> str:
    return text if len(text) <= WIDTH else text[: WIDTH - 1] + "…"


def _columns(rows: list[list[str]], pad: int = 0) -> list[str]:
    """Rows of cells, each column padded to its widest cell (the last column is not padded)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    widths[0] = max(widths[0], pad)
    return [("  " + "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]).rstrip() for row in rows]


def table(lines: list[ModelLine]) -> list[str]:
    """The summary, each line at most :data:`WIDTH` columns."""
    if not lines:
        return ["No register stage in dvc.yaml: nothing was registered."]
    done = [line for line in lines if line.model is not None]
    rows = [[line.dataset, f"{line.model} v{line.version}", f"{line.metric} {_score(line.score)}",
             f"{line.images} images" if line.images is not None else "", _verdict(line)] for line in done]
    width = max(len(line.dataset) for line in lines)
    formatted = dict(zip((line.dataset for line in done), _columns(rows, width), strict=True)) if rows else {}
    head = f"{len(done)} of {len(lines)} models" if len(done) < len(lines) else f"{len(lines)} models"
    out = [f"{head} registered, each scored on its held-out split by the metric that promotes it:"]
    out += [formatted.get(line.dataset) or f"  {line.dataset:<{width}}  not registered yet: run `dvc repro`" for line in lines]
    if any(not line.promoted and line.champion_version for line in done):
        out.append("@challenger (vN: score): not promoted; version N stays @champion, with that score")
    out += ["Pictures: reports/evaluate/<dataset>/ (confusion matrix, per-class scores, mistakes, Grad-CAM)",
            "Every figure: dvc metrics show    Runs, models and aliases side by side: make ui"]
    return [_clip(text) for text in out]
