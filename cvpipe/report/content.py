"""What a person reads about one dataset, gathered from the files its stages wrote.

The gate's checks (``summary.json``) and quarantined files (``quarantine.csv``), the evaluation's
figures (``metrics.json``) and pictures (its PNGs), and the registry's decision (the register JSON).
Both the Prefect artifacts of a flow run and the offline HTML report are drawn from these; a file
that is not there yet gives an empty section, never an error.
"""

from __future__ import annotations

import base64
import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the pictures people look at first come first; any other PNG of the evaluation follows, by name
PICTURE_ORDER = ("confusion.png", "pr_curves.png", "misclassified.png", "errors.png", "worst.png", "gradcam.png", "filters.png")
PICTURE_TITLES = {
    "confusion.png": "Confusion matrix",
    "pr_curves.png": "Precision-recall curves",
    "misclassified.png": "Misclassified images",
    "errors.png": "Detection errors",
    "worst.png": "Worst images",
    "gradcam.png": "Grad-CAM: what the network looked at",
    "filters.png": "First-layer filters",
}


def _json(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Picture:
    path: Path
    title: str

    def data_uri(self) -> str:
        """The PNG inline, for a page or an artifact that must not fetch anything."""
        return "data:image/png;base64," + base64.b64encode(self.path.read_bytes()).decode("ascii")


@dataclass
class DatasetContent:
    dataset: str
    task: str
    gate: dict[str, Any] = field(default_factory=dict)  # summary.json: counts and checks
    quarantined: list[dict[str, str]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    pictures: list[Picture] = field(default_factory=list)
    registry: dict[str, Any] = field(default_factory=dict)

    @property
    def checks(self) -> list[dict[str, Any]]:
        """One row per gate check: what it expects, whether it passed, how many rows failed it, examples."""
        return [{"check": c.get("check", ""), "passed": bool(c.get("passed")), "blocking": bool(c.get("blocking")),
                 "failing rows": int(c.get("unexpected_count") or 0),
                 "expectation": c.get("expectation", ""),
                 "examples": ", ".join(str(e) for e in (c.get("examples") or [])[:5])}
                for c in self.gate.get("checks", []) if isinstance(c, dict)]

    @property
    def scalars(self) -> list[dict[str, Any]]:
        """metrics.json's numbers, one row each (a metric the split cannot define is shown as undefined)."""
        rows = []
        for name, value in self.metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, type(None))):
                continue
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                rows.append({"metric": name, "value": "undefined"})
            else:
                rows.append({"metric": name, "value": round(value, 4) if isinstance(value, float) else value})
        return rows

    @property
    def gate_verdict(self) -> str:
        if not self.gate:
            return "not run"
        counts = (f"{self.gate.get('images', 0)} images, {self.gate.get('blocking_failures', 0)} blocking failure(s), "
                  f"{self.gate.get('warnings', 0)} warning(s), {self.gate.get('quarantined_images', 0)} quarantined")
        return ("FAILED" if self.gate.get("blocking_failures") and not self.gate.get("passed") else "passed") + f": {counts}"


def gather(dataset: str, task: str, gate_report: Path | None, validated: Path | None, eval_dir: Path,
           register_json: Path, gate_metrics: Path | None = None) -> DatasetContent:
    """Everything shown about ``dataset``, from the files its stages wrote (missing ones give empty sections; without
    the gate's ``summary.json``, its counts in ``gate_metrics``)."""
    gate = _json(gate_report / "summary.json" if gate_report else None) or _json(gate_metrics)
    content = DatasetContent(dataset, task, gate=gate,
                             metrics=_json(eval_dir / "metrics.json"), registry=_json(register_json))
    quarantine = validated / "quarantine.csv" if validated else None
    if quarantine is not None and quarantine.is_file():
        with quarantine.open(newline="", encoding="utf-8") as f:
            content.quarantined = list(csv.DictReader(f))
    if eval_dir.is_dir():
        pngs = {p.name: p for p in eval_dir.glob("*.png") if p.is_file()}
        ordered = [n for n in PICTURE_ORDER if n in pngs] + sorted(n for n in pngs if n not in PICTURE_ORDER)
        content.pictures = [Picture(pngs[n], PICTURE_TITLES.get(n, n.removesuffix(".png").replace("_", " ").capitalize()))
                            for n in ordered]
    return content


def model_version_url(mlflow_ui: str, registry: dict[str, Any]) -> str | None:
    """The MLflow UI's page of the registered version, or None before registration."""
    name, version = registry.get("model_name"), registry.get("version")
    if not name or version in (None, ""):
        return None
    return f"{mlflow_ui.rstrip('/')}/#/models/{name}/versions/{version}"


def decision(registry: dict[str, Any]) -> str:
    """The registry's decision in one sentence."""
    if not registry:
        return "not registered yet"
    version = f"{registry.get('model_name')} v{registry.get('version')}"
    if registry.get("promoted"):
        verdict = f"{version} promoted to @champion"
    else:
        verdict = f"{version} is @{registry.get('alias') or 'challenger'}"
        if registry.get("champion_version"):
            verdict += f"; v{registry['champion_version']} stays @champion"
    return verdict + (f" ({registry['reason']})" if registry.get("reason") else "")
