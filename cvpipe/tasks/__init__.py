"""The task seam: what every task (classification, detection, segmentation) implements, and the registry.

A stage never names a task: it looks the dataset's task up here and calls it. Adding a task means a
package under ``cvpipe/`` with a class implementing :class:`Task`, an entry in :data:`TASKS`, a
section ``<task>.datasets.<dataset>`` in params.yaml and a block of stages in dvc.yaml (README,
"Adding a task").
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cvpipe.core.errors import CvpipeError, DataError, ParamsError
from cvpipe.core.params import check_keys, choice, cpu_threads, lookup, mapping, training_settings

if TYPE_CHECKING:
    from cvpipe.data.manifest import ManifestDir

# task name -> "module:Class" implementing Task; None: the task's data stages exist, its trainer not yet
TASKS: dict[str, str | None] = {
    "classification": "cvpipe.classification.task:ClassificationTask",
    "detection": "cvpipe.detection.task:DetectionTask",
    "segmentation": "cvpipe.segmentation.task:SegmentationTask",
}

UNDEFINED = "undefined"  # metrics.json's key for why the primary metric is null (absent when it is a number)
# offline scorers of a competition's submission files: ``python -m stages.evaluate <name> --truth T --submission S``;
# "module:function" taking (truth, submission) paths and returning an object with ``score``, ``images``, ``missing``
SCORERS: dict[str, str] = {
    "dsb-score": "cvpipe.segmentation.submission:score_submission",  # Data Science Bowl 2018 (ImageId,EncodedPixels)
}

# what a dataset of params.yaml's `datasets` may say; `path`: an existing folder of that layout, linked as
# data/raw/<name> (never copied) instead of a generated sample
DATASET_KEYS = ("source", "task", "modes", "warn", "path")


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
    (None where the split cannot define it: :func:`undefined_reason`) and the same metric per class (or per
    group: image type for segmentation)."""

    primary: float | None
    per_group: dict[str, float]
    images: tuple[str, ...] = ()  # the images scored, in order: the gate pairs two models' scores image by image
    # the primary metric on a resample of ``images`` (indices, with repeats): the gate's bootstrap (cvpipe.mlops.evidence)
    rescore: Callable[[Any], float] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class LoggedModel:
    """A model logged to the active MLflow run and registered as a new version of ``name``."""

    name: str
    version: str


@dataclass(frozen=True)
class Predicted:
    """One image's prediction: its rows of predictions.csv (keys: the task's ``prediction_columns``; none when
    nothing was found), the image annotated with them, and a short caption for the contact sheet."""

    rows: list[dict[str, Any]]
    picture: Any  # uint8 H x W x 3 RGB
    caption: str


@dataclass(frozen=True)
class Suspect:
    """A training label that out-of-fold models disagree with: the image (its path in the data folder), what looks
    wrong (``problem``: a short kind, such as ``label``), the evidence in words, a score to rank by (higher: more likely
    wrong), the picture a person looks at (uint8 H x W x 3 RGB; a task may leave it None past ``labels.top``, which
    the stage never writes) and what the task's :meth:`Task.export_queue` writes of it (None: nothing)."""

    image: str
    problem: str
    evidence: str
    score: float
    picture: Any
    fix: Any = field(default=None, compare=False, repr=False)


class Task(Protocol):
    """One task's training, evaluation and MLflow model, behind the same calls for every stage.

    The stage reads params.yaml and every path from its command line; the task gets values: ``config``
    (its frozen training config, from ``<task>.datasets.<dataset>`` or read back from train.json, both
    through :meth:`train_config`), ``settings`` (from ``<task>.evaluate``, through :meth:`evaluate_settings`),
    ``compute`` (device, CPU threads, cache folder) and ``data`` (what :meth:`load` read, once per stage).
    """

    name: str  # the task's name in params.yaml (``datasets.<name>.task``)
    model_kind: str  # registered model name suffix: ``<dataset>-<model_kind>`` (``fruits360-classifier``)
    primary_metric: str  # the key of metrics.json the promotion gate compares (``macro_f1``)
    per_group_metric: str  # the key of metrics.json with the per-group scores, by group name (``f1``)
    group_name: str  # what per-group scores are per (``class``)
    prediction_columns: tuple[str, ...]  # predictions.csv's columns after ``file`` (:meth:`predict`)
    explanation: str | None  # what :meth:`explain` draws (``predict --explain``); None: the task has no explain
    label_review: str | None  # what :meth:`label_suspects` finds (``stages.labels``); None: the task has no queue yet
    queue_export: str | None  # what :meth:`export_queue` writes beside the queue; None: the queue alone

    def train_config(self, section: dict[str, Any]) -> Any:
        """The frozen training config of a params section or of train.json's ``params`` (unknown keys rejected)."""

    def evaluate_settings(self, section: dict[str, Any]) -> Any:
        """The frozen settings of the task's ``<task>.evaluate`` section (unknown keys rejected)."""

    def load(self, data_dir: Path | ManifestDir, config: Any) -> Any:
        """The dataset in ``data_dir`` split as ``config`` trained on it (what :meth:`log_model` and :meth:`score` take);
        a task that reads the validated manifest also takes that manifest already read (register reads it once)."""

    def train(self, data_dir: Path, out: Path, config: Any, compute: Compute, stop_after: int | None = None) -> TrainResult:
        """Train on ``data_dir``; write the model and ``train.json`` (with ``config``'s record) to ``out``."""

    def evaluate(self, model_dir: Path, data_dir: Path, out: Path, split: str, config: Any, settings: Any, compute: Compute,
                 title: str) -> dict[str, Any]:
        """Score the trained model on ``split``; write the task's reports to ``out``; return metrics.json's content
        (with ``primary_metric`` and its per-group scores under ``per_group_metric``)."""

    def log_model(self, model_dir: Path, data: Any, registered_name: str, config: Any, settings: Any) -> LoggedModel:
        """Log the trained model to the active MLflow run (pyfunc, signature, example) and register it; ``settings``
        for a model that serves what was evaluated."""

    def score(self, model_uri: str, data: Any, split: str, cpu_threads: int) -> Scores:
        """Score a registered model (``models:/...``), loaded as anyone would load it, on ``split``."""

    def predict(self, model: Any, images: list[Any]) -> list[Predicted]:
        """The predictions of ``model`` (the python model of a registered version's pyfunc, loaded) for a batch of
        uint8 H x W x 3 RGB images, as its pyfunc makes them."""

    def explain(self, model: Any, images: list[Any]) -> list[Any]:
        """For a batch of images as :meth:`predict` takes them, each as a uint8 RGB picture of why ``model`` predicts what
        it does (:attr:`explanation`). Only a task whose ``explanation`` is not None has it."""

    def label_suspects(self, data_dir: Path, config: Any, settings: Any, compute: Compute) -> list[Suspect]:
        """The training labels of ``data_dir`` most likely wrong, best first: ``settings.folds`` models
        (:class:`~cvpipe.core.params.LabelSettings`), each trained with ``config`` (``settings.epochs`` where set) on
        all folds of the training split but one (:func:`cvpipe.data.splits.folds`), predict the one left out. Only a
        task whose :attr:`label_review` is not None has it."""

    def export_queue(self, suspects: list[Suspect], out: Path) -> dict[str, Any]:
        """Write the queued ``suspects`` (those :meth:`label_suspects` returned, cut at ``labels.top``) under ``out``,
        the queue's folder, in the annotator's own format, for a person to correct and put back where the raw dataset
        keeps its annotations; return what was written (files per folder, for queue.json). Only a task whose
        :attr:`queue_export` is not None has it."""

    def export(self, model: Any, fmt: str, out: Path) -> dict[str, Any]:
        """Write the network of ``model`` (the python model of a registered version's pyfunc, loaded) to ``out`` as
        ``fmt`` (:data:`cvpipe.tasks.export.FORMATS`); return how to feed and read it (``export.json``)."""


@dataclass(frozen=True)
class Compute:
    """Where and how a task computes: ``train.device``, ``train.cpu_threads`` and ``train.cache_dir`` (``None``: no cache)."""

    device: str
    cpu_threads: int
    cache_dir: Path | None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Compute:
        """The ``train`` section of params.yaml, checked (a bad key is named)."""
        device, cache_dir = training_settings(params)
        return cls(device, cpu_threads(params), cache_dir)


def undefined_reason(metrics: dict[str, Any], key: str) -> str | None:
    """Why metrics.json's primary metric ``key`` is undefined (null, with the reason under :data:`UNDEFINED`), or
    None when it is a finite number: a held-out split with nothing to score (no object, no nucleus, no class)."""
    value = metrics.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return None
    return str(metrics.get(UNDEFINED) or f"{key} is {value!r}, not a number")


def has_trainer(name: str) -> bool:
    """Whether ``name`` is a task of :data:`TASKS` with a trainer."""
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


def read_trained(model_dir: Path) -> dict[str, Any]:
    """``train.json`` of a trained model folder: what the train stage recorded (summary and ``params``)."""
    path = model_dir / "train.json"
    if not path.is_file():
        raise DataError(path, "not found (run the train stage first)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(path, f"malformed JSON: {exc}") from exc
    if not isinstance(record, dict) or not isinstance(record.get("params"), dict):
        raise DataError(path, "no \"params\" mapping (train again)")
    return record


def trained_config(task: Task, model_dir: Path, record: dict[str, Any] | None = None) -> Any:
    """The training config train.json recorded, read back through the task's config class (``record``: train.json
    already read); a key the class rejects names the file."""
    record = read_trained(model_dir) if record is None else record
    try:
        return task.train_config(record["params"])
    except ParamsError as exc:
        raise exc.under("params", model_dir / "train.json") from None


def evaluate_settings(params: dict[str, Any], task: str) -> Any:
    """The task's frozen evaluation settings from ``<task>.evaluate`` of params.yaml; a bad key is named in that section."""
    key = f"{task}.evaluate"
    section = mapping(lookup(params, key, {}), key)
    try:
        return get_task(task).evaluate_settings(section)
    except ParamsError as exc:
        raise exc.under(key) from None


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
    if "path" in spec and not (isinstance(spec["path"], str) and spec["path"]):
        raise ParamsError(f"{key}.path", f"is {spec['path']!r}; give the folder that holds the dataset in its native layout")
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
