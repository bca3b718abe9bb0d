"""The task seam: what every task (classification, detection, segmentation) implements, and the registry.

A stage never names a task: it looks the dataset's task up here and calls it. Adding a task means a
package under ``cvpipe/`` with a class implementing :class:`Task`, an entry in :data:`TASKS`, a
section ``<task>.datasets.<dataset>`` in params.yaml and a block of stages in dvc.yaml (README,
"Adding a task").
"""

from __future__ import annotations

import importlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cvpipe.core.errors import CvpipeError, DataError, ParamsError
from cvpipe.core.params import check_keys, choice, lookup, mapping

# task name -> "module:Class" implementing Task; None: the task's data stages exist, its trainer not yet
TASKS: dict[str, str | None] = {
    "classification": "cvpipe.classification.task:ClassificationTask",
    "detection": "cvpipe.detection.task:DetectionTask",
    "segmentation": "cvpipe.segmentation.task:SegmentationTask",
}

# offline scorers of a competition's submission files: ``python -m stages.evaluate <name> --truth T --submission S``;
# "module:function" taking (truth, submission) paths and returning an object with ``score``, ``images``, ``missing``
SCORERS: dict[str, str] = {
    "dsb-score": "cvpipe.segmentation.submission:score_submission",  # Data Science Bowl 2018 (ImageId,EncodedPixels)
}

DATASET_KEYS = ("source", "task", "modes", "warn")  # what a dataset of params.yaml's `datasets` may say


@dataclass(frozen=True)
class TrainResult:
    """What a task's training reports; ``metrics`` holds its own validation figures (val loss, accuracy...)."""

    task: str
    model: str  # architecture or model file, for run names
    epochs: int
    best_epoch: int
    stopped_early: bool
    resumed_from_epoch: int | None
    device: str
    seconds: float
    data_digest: str
    params_digest: str
    metrics: dict[str, float] = field(default_factory=dict)

    def record(self, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """``train.json``: only what the inputs decide (no timings, no resume point), so a rerun writes the same bytes."""
        return {k: v for k, v in asdict(self).items() if k not in ("seconds", "resumed_from_epoch")} | {"params": params} | extra


@dataclass(frozen=True)
class Scores:
    """A model's scores on one split, as the promotion gate compares them: the task's primary metric
    and the same metric per class (or per group: image type for segmentation)."""

    primary: float
    per_group: dict[str, float]


@dataclass(frozen=True)
class LoggedModel:
    """A model logged to the active MLflow run and registered as a new version of ``name``."""

    name: str
    version: str


class Task(Protocol):
    """One task's training, evaluation and MLflow model, behind the same calls for every stage."""

    name: str  # the task's name in params.yaml (``datasets.<name>.task``)
    model_kind: str  # registered model name suffix: ``<dataset>-<model_kind>`` (``fruits360-classifier``)
    primary_metric: str  # the key of metrics.json the promotion gate compares (``macro_f1``)
    per_group_metric: str  # the key of metrics.json with the per-group scores, by group name (``f1``)
    group_name: str  # what per-group scores are per (``class``)
    data_root: str  # the folder under which train, evaluate and register read ``<dataset>`` (``data/validated``)

    def train(self, manifest_dir: Path, out: Path, params: dict[str, Any], device: str, cache_dir: Path | None,
              stop_after: int | None = None) -> TrainResult:
        """Train on a validated manifest folder; write the model and ``train.json`` (with ``params``) to ``out``."""

    def evaluate(self, model_dir: Path, manifest_dir: Path, out: Path, split: str, device: str, cache_dir: Path | None,
                 title: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
        """Score the trained model on ``split``; write the task's reports to ``out``; return metrics.json's content
        (with ``primary_metric`` and its per-group scores under ``per_group_metric``). ``settings``: the task's
        ``<task>.evaluate`` section of params.yaml, if any."""

    def log_model(self, model_dir: Path, manifest_dir: Path, registered_name: str,
                  settings: dict[str, Any] | None = None) -> LoggedModel:
        """Log the trained model to the active MLflow run (pyfunc, signature, example) and register it.
        ``settings``: the task's ``<task>.evaluate`` section, for a model that serves what was evaluated."""

    def score(self, model_uri: str, manifest_dir: Path, split: str, params: dict[str, Any]) -> Scores:
        """Score a registered model (``models:/...``), loaded as anyone would load it, on ``split``."""


def has_trainer(name: str) -> bool:
    return TASKS.get(name) is not None


def get_task(name: str) -> Task:
    """The task implementation for ``name``; an unknown task or one without a trainer is a clear error."""
    if name not in TASKS:
        raise CvpipeError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    target = TASKS[name]
    if target is None:
        built = ", ".join(t for t in TASKS if TASKS[t] is not None)
        raise CvpipeError(f"the {name} task has no trainer yet (tasks with one: {built}); its datasets stop after conversion")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)()


def get_scorer(name: str):
    """The submission scorer called ``name`` (:data:`SCORERS`)."""
    if name not in SCORERS:
        raise CvpipeError(f"unknown scorer {name!r}; choose one of {', '.join(SCORERS)}")
    module, function = SCORERS[name].split(":")
    return getattr(importlib.import_module(module), function)


def trained_params(model_dir: Path) -> dict[str, Any]:
    """The training parameters ``train.json`` recorded (empty when there is none)."""
    path = model_dir / "train.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("params", {})
    except ValueError as exc:
        raise DataError(path, f"malformed JSON: {exc}") from exc


def dataset_spec(params: dict[str, Any], dataset: str) -> dict[str, Any]:
    """A dataset's entry under ``datasets`` (source, task, ...); an unlisted one names the listed ones."""
    datasets = mapping(params.get("datasets"), "datasets")
    if dataset not in datasets:
        raise ParamsError("datasets", f"has no dataset {dataset!r}; listed: {', '.join(datasets) or 'none'}")
    key = f"datasets.{dataset}"
    spec = mapping(datasets[dataset], key)
    check_keys(spec, DATASET_KEYS, key)
    for entry in ("source", "task"):
        if not isinstance(spec.get(entry), str):
            raise ParamsError(f"{key}.{entry}", "missing (every dataset names its source layout and its task)")
    choice(spec["task"], f"{key}.task", TASKS)
    return spec


def dataset_task(params: dict[str, Any], dataset: str) -> str:
    """The task of a dataset listed under ``datasets``; an unlisted one is a clear error."""
    return dataset_spec(params, dataset)["task"]


def task_section(params: dict[str, Any], dataset: str) -> tuple[str, dict[str, Any]]:
    """(task, training section) of a dataset: ``<task>.datasets.<dataset>`` in params.yaml."""
    task = dataset_task(params, dataset)
    sections = mapping(lookup(params, f"{task}.datasets", None), f"{task}.datasets")
    if dataset not in sections:
        raise ParamsError(f"{task}.datasets", f"has no section for dataset {dataset!r} (its task is {task}); "
                                              f"sections: {', '.join(sections) or 'none'}")
    return task, mapping(sections[dataset], f"{task}.datasets.{dataset}")
