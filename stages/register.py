"""Register: log the run in MLflow, register the model, and promote it only if it beats the champion.

    python -m stages.register --dataset NAME --model-dir models/NAME --eval-dir reports/evaluate/NAME \
        --manifest-dir data/validated/NAME [--data-dir DIR] --out reports/register/NAME.json [--lineage dvc.lock]

One MLflow run per pipeline execution (experiment = the dataset): flattened training params,
per-epoch metrics from ``history.csv``, the evaluation metrics and files, the dataset as an input
(``mlflow.log_input``), lineage tags (git commit, data digest, and with ``--lineage`` the DVC hashes
the train stage ran with), and the task's model (pyfunc, with signature and input example) as a new
version of ``<dataset>-<kind>`` (the task's ``model_kind``). Promotion gate: the current ``@champion``
and the new version are both loaded back from the registry and scored on the same evaluation split;
the new version takes ``champion`` only on evidence: the lower bound of the paired bootstrap interval of
the difference in the task's primary metric (both models rescored on the same ``registry.resamples`` resamples
of the images, seeded with ``registry.seed``, at ``registry.confidence``; :mod:`cvpipe.mlops.evidence`) must be
above ``registry.min_delta``, and no class's score may drop by more than ``registry.tolerance``; otherwise it
gets ``challenger``. The decision, its reason, the interval and the per-class changes are tags on the version
and the run (and the run's ``promotion.json``), and are written to ``--out`` (``reports/register/<dataset>.json``).
Every decision is also recorded on its version with who made it and when, so the versions are the promotion
history: ``python -m stages.register --history NAME`` prints it. A split that cannot
define the primary metric (metrics.json holds it as null with the reason under ``undefined``: no object,
no nucleus) never promotes: the version gets ``challenger`` and the reason names the split.

Before anything is written the store is checked (:func:`cvpipe.mlops.registry.open_store`): a read-only
SQLite store, or a tracking server that does not answer within seconds, is one ``error:`` line.

A killed run is reconciled by the next one (:func:`cvpipe.mlops.registry.reconcile`): each run is tagged
with its process id and host (``cvpipe.pid``, ``cvpipe.host``); before registering, a RUNNING run of
the experiment made on this host by a process that no longer exists (or with no such tags) is ended
as KILLED, and every version of the model without a decision from a finished run is marked
``promotion.decision=abandoned``, handing back any alias it took. The rerun is then gated exactly as
a clean run would be; only its version number differs. What was reconciled is logged and returned
(``reconciled_runs``, ``reconciled_versions``), but is not part of the report: that holds the outcome.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from cvpipe.core import cli
from cvpipe.core.cpu import pin_kernels, pinned
from cvpipe.core.errors import DataError
from cvpipe.core.io import write_json
from cvpipe.core.params import cpu_threads, load_params, registry_settings
from cvpipe.data.manifest import ManifestDir, read_manifest_dir
from cvpipe.mlops.evidence import BootstrapSettings, interval, paired_difference
from cvpipe.mlops.registry import (
    CHALLENGER,
    CHAMPION,
    DECIDED_AT_TAG,
    DECIDED_BY_TAG,
    DEFAULT_ROOT,
    REPLACES_TAG,
    Decision,
    Reconciled,
    alias_version,
    await_turn,
    decided_by,
    dvc_lineage,
    ensure_experiment,
    flatten,
    git_commit,
    open_store,
    process_tags,
    promotion_decision,
    promotion_history,
    reconcile,
    undefined_decision,
)
from cvpipe.tasks import (
    Scores,
    Task,
    dataset_task,
    evaluate_settings,
    get_task,
    read_trained,
    trained_config,
    undefined_reason,
)

log = logging.getLogger(__name__)
# not in the report: it holds the outcome, the same bytes for the same outcome, so dvc.lock can hold it
NOT_REPORTED = ("run_id", "reconciled_runs", "reconciled_versions")
LOGGED_COLUMNS = ["path", "split", "label", "sha256"]  # the manifest columns logged as the run's dataset input


@dataclass(frozen=True)
class RegisterResult:
    """The registered version and the promotion gate's decision (the report holds all but ``NOT_REPORTED``)."""

    model_name: str
    version: str
    alias: str
    promoted: bool
    reason: str
    run_id: str
    metric: str
    score: float | None  # None: the split cannot define the metric (the reason says why; never promoted)
    champion_score: float | None
    champion_version: str | None
    difference: dict[str, Any] | None = None  # score - champion_score, its paired bootstrap interval (Interval.record)
    changes: dict[str, float] = field(default_factory=dict)  # per class (image type): score - the champion's
    reconciled_runs: tuple[str, ...] = ()  # runs of killed earlier attempts, ended as KILLED before this one
    reconciled_versions: tuple[str, ...] = ()  # their versions, marked abandoned
    interval: dict[str, Any] | None = None  # score with its bootstrap interval over the held-out images (Interval.record)


@dataclass(frozen=True)
class Gate:
    """How the new version is gated: ``registry.min_delta`` and ``registry.tolerance``, the bootstrap's settings, on
    ``split``, computed with ``train.cpu_threads`` threads (as evaluate computed its scores), after waiting up to
    ``registry.wait_s`` for another register of the dataset to decide an older version."""

    min_delta: float
    tolerance: float
    cpu_threads: int
    split: str = "test"
    wait_s: float = 900.0  # registry.wait_s: how long to wait for another register's decision on an older version
    bootstrap: BootstrapSettings = field(default_factory=BootstrapSettings)


def run(
    dataset: str,
    task: str,
    model_dir: Path,
    eval_dir: Path,
    manifest_dir: Path,
    gate: Gate,
    settings: Any = None,
    data_dir: Path | None = None,
    lineage: Path | None = None,
    mlruns: Path = DEFAULT_ROOT,
) -> RegisterResult:
    """Log, register and gate the model in ``model_dir`` (see the module's docstring). ``manifest_dir`` is the
    validated manifest (the run's dataset input); ``data_dir`` what the task reads (default: ``manifest_dir``);
    ``settings`` the task's evaluate settings (a model may serve the settings it was evaluated with)."""
    implementation = get_task(task)
    manifest = read_manifest_dir(manifest_dir, task=task)  # once: the run's input, and what a task without data_dir reads
    for required in (model_dir / "train.json", model_dir / "history.csv", eval_dir / "metrics.json"):
        if not required.is_file():
            raise DataError(required, "not found (run the train and evaluate stages first)")
    trained, evaluated = read_trained(model_dir), _json(eval_dir / "metrics.json")
    config = trained_config(implementation, model_dir, trained)
    open_store(mlruns)  # a read-only store or a server that does not answer: one line, before anything is written
    data = implementation.load(data_dir or manifest, config)
    import mlflow
    from mlflow import MlflowClient

    name = f"{dataset}-{implementation.model_kind}"
    experiment = ensure_experiment(dataset, mlruns)
    client = MlflowClient()
    tags = {
        "dataset": dataset,
        "task": task,
        "classes": json.dumps(manifest.classes.names),
        "git.commit": git_commit(),
        "data.digest": trained["data_digest"],
        "params.digest": trained["params_digest"],
    } | (dvc_lineage(lineage, dataset) if lineage else {})
    reconciled = reconcile(client, experiment, name)
    _log_reconciled(reconciled, name)
    with mlflow.start_run(experiment_id=experiment, run_name=f"{dataset}-{trained['model']}",
                          tags=tags | process_tags()) as active:
        _log_run(dataset, implementation, model_dir, eval_dir, manifest, trained, evaluated)
        version = implementation.log_model(model_dir, data, name, config, settings).version
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        # another register of this dataset deciding an older version: its outcome first, then this one's gate
        waited = await_turn(client, experiment, name, version, gate.wait_s, waiting=partial(_log_waiting, name, version))
        reconciled = Reconciled(reconciled.runs + waited.runs, reconciled.versions + waited.versions)
        champion = alias_version(client, name, CHAMPION)
        new, old, decision = _gate(implementation, name, version, champion, data, gate, evaluated)
        alias = CHAMPION if decision.promote else CHALLENGER
        metric = implementation.primary_metric
        _mark(client, name, version, alias, decision, metric, new, old, champion, gate.bootstrap)
        return RegisterResult(name, version, alias, decision.promote, decision.reason, active.info.run_id, metric,
                              _rounded(new), _rounded(old), champion,
                              decision.difference.record() if decision.difference else None,
                              {g: round(v, 6) for g, v in sorted(decision.changes.items())}, reconciled.runs, reconciled.versions,
                              decision.own.record() if decision.own else None)


def _gate(implementation: Task, name: str, version: str, champion: str | None, data: Any, gate: Gate,
          evaluated: dict[str, Any]) -> tuple[Scores, Scores | None, Decision]:
    """Both models as the registry serves them, on the same images, and the decision; a split that cannot define
    the primary metric (metrics.json says why, or the new version scores no number) promotes nothing."""
    metric = implementation.primary_metric
    new = implementation.score(f"models:/{name}/{version}", data, gate.split, gate.cpu_threads)
    same_split = str(evaluated.get("split", gate.split)) == gate.split
    undefined = (undefined_reason(evaluated, metric) if same_split else None) or undefined_reason({metric: new.primary}, metric)
    if undefined is not None:
        return Scores(None, new.per_group), None, undefined_decision(metric, gate.split, undefined)
    own = interval(new.primary, new.rescore, len(new.images), gate.bootstrap) if new.rescore is not None else None
    old = implementation.score(f"models:/{name}@{CHAMPION}", data, gate.split, gate.cpu_threads) if champion else None
    if old is None:
        return new, None, promotion_decision(new.primary, new.per_group, None, None, gate.min_delta, gate.tolerance, metric,
                                             own=own)
    if old.primary is None or new.rescore is None or old.rescore is None:
        raise DataError(Path(gate.split), f"the {metric} of {name} cannot be compared image by image with its champion's")
    difference = paired_difference((new.primary, new.rescore), (old.primary, old.rescore), new.images, old.images, gate.bootstrap)
    decision = promotion_decision(new.primary, new.per_group, old.primary, old.per_group, gate.min_delta, gate.tolerance,
                                  metric, implementation.group_name, difference, own)
    return new, old, decision


def _rounded(scores: Scores | None) -> float | None:
    return None if scores is None or scores.primary is None else round(scores.primary, 6)


def _log_run(dataset: str, implementation: Task, model_dir: Path, eval_dir: Path, manifest: ManifestDir,
             trained: dict[str, Any], evaluated: dict[str, Any]) -> None:
    """The active run's params, per-epoch and test metrics, evaluation and training files, and dataset input."""
    import mlflow

    mlflow.log_params(flatten({"train": trained["params"]}) | {"dataset": dataset, "device": trained["device"]})
    with open(model_dir / "history.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            step = int(row.pop("epoch"))
            mlflow.log_metrics({k: float(v) for k, v in row.items()}, step=step)
    mlflow.log_metrics({f"test_{k}": v for k, v in evaluated.items() if isinstance(v, (int, float))})
    per_group = implementation.per_group_metric
    mlflow.log_metrics({f"test_{per_group}.{g}": v for g, v in evaluated.get(per_group, {}).items()})
    mlflow.log_artifacts(str(eval_dir), "evaluation")
    mlflow.log_artifact(str(model_dir / "train.json"), "training")
    mlflow.log_artifact(str(model_dir / "history.csv"), "training")
    table = manifest.images.select(LOGGED_COLUMNS).to_pandas()
    with warnings.catch_warnings():  # a local path matches two equivalent MLflow source types; either is right
        warnings.simplefilter("ignore", UserWarning)
        data = mlflow.data.from_pandas(table, source=str(manifest.folder.resolve()), name=dataset,
                                       targets="label" if table["label"].notna().any() else None)
    mlflow.log_input(data, context="training")


def _mark(client: Any, name: str, version: str, alias: str, decision: Decision, metric: str, new: Scores, old: Scores | None,
          champion: str | None, bootstrap: BootstrapSettings) -> None:
    """The decision as tags on the version and the run (and the run's ``promotion.json``), then the alias moved."""
    import mlflow

    d = decision.difference
    worst = min(decision.changes.items(), key=lambda kv: kv[1], default=("", None))
    gate = {
        "promotion.decision": alias,
        "promotion.reason": decision.reason,
        "promotion.metric": metric,
        f"promotion.{metric}": "undefined" if new.primary is None else f"{new.primary:.6f}",
        f"promotion.{metric}_interval": f"[{o.low:.6f}, {o.high:.6f}] at {o.confidence:g}, {o.resamples} resamples of "
                                        f"{o.images} images" if (o := decision.own) else "",
        "promotion.champion_version": champion or "",
        f"promotion.champion_{metric}": f"{old.primary:.6f}" if old and old.primary is not None else "",
        "promotion.difference": f"{d.estimate:+.6f}" if d else "",
        "promotion.interval": f"[{d.low:+.6f}, {d.high:+.6f}] at {d.confidence:g}, {d.resamples} resamples of {d.images} images"
                              if d else "",
        "promotion.worst_change": f"{worst[0]} {worst[1]:+.6f}" if worst[1] is not None else "",
        REPLACES_TAG: alias_version(client, name, alias) or "",
        DECIDED_AT_TAG: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        DECIDED_BY_TAG: decided_by(),
    }
    mlflow.log_dict({"decision": alias, "reason": decision.reason, "metric": metric, "score": new.primary,
                     "interval": decision.own.record() if decision.own else None,
                     "champion_version": champion, "champion_score": old.primary if old else None,
                     "difference": d.record() if d else None, "bootstrap": bootstrap.record(),
                     "changes": dict(sorted(decision.changes.items()))}, "promotion.json")
    if d:
        mlflow.log_metrics({"promotion_difference": d.estimate, "promotion_ci_low": d.low, "promotion_ci_high": d.high})
    # the version's tags before the alias: a run killed after moving the alias must say where it was
    for key, value in gate.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, alias, version)
    mlflow.set_tags(gate)


def _log_reconciled(reconciled: Reconciled, name: str) -> None:
    if reconciled.runs or reconciled.versions:
        log.info("register: reconciled %s and %s of %s", _count(reconciled.runs, "interrupted run"),
                 _count(reconciled.versions, "undecided version"), name)
    if reconciled.live:
        log.info("register: left %s of %s RUNNING: %s (their process may be alive)",
                 _count(reconciled.live, "run"), name, ", ".join(reconciled.live))


def _log_waiting(name: str, version: str, older: str, run_id: str) -> None:
    log.info("register: waiting for version %s of %s (run %s) to be decided before gating version %s", older, name,
             run_id, version)


def _count(items: tuple[str, ...], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(path, f"malformed JSON: {exc}") from exc


def get_args_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m stages.register``."""
    parser = argparse.ArgumentParser(prog="python -m stages.register", description=__doc__.splitlines()[0],
                                     epilog="python -m stages.register --history NAME prints a registered model's promotions.")
    parser.add_argument("--dataset", required=True, help="a dataset listed in params.yaml")
    parser.add_argument("--model-dir", type=Path, required=True, help="the trained model folder (models/<dataset>)")
    parser.add_argument("--eval-dir", type=Path, required=True, help="its evaluation (reports/evaluate/<dataset>)")
    parser.add_argument("--manifest-dir", type=Path, required=True,
                        help="the validated manifest, logged as the run's input (data/validated/<dataset>)")
    parser.add_argument("--data-dir", type=Path, help="what the task reads, if not the validated manifest (a converted folder)")
    parser.add_argument("--lineage", type=Path, help="dvc.lock: tag the run with the DVC hashes the train stage ran with")
    parser.add_argument("--out", type=Path, required=True, help="the report to write (reports/register/<dataset>.json)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    return parser


def execute(args: argparse.Namespace, params: dict[str, Any] | None = None) -> RegisterResult:
    """Run the stage on parsed arguments; ``params``: params.yaml already read (else read from ``--params``)."""
    params = load_params(args.params) if params is None else params
    pin_kernels(pinned(params))  # before any tensor work: the same bytes on every x86-64 CPU
    task = dataset_task(params, args.dataset)
    r = registry_settings(params)
    gate = Gate(r.min_delta, r.tolerance, cpu_threads(params), wait_s=r.wait_s,
                bootstrap=BootstrapSettings(r.confidence, r.resamples, r.seed))
    result = run(args.dataset, task, args.model_dir, args.eval_dir, args.manifest_dir, gate, evaluate_settings(params, task),
                 args.data_dir, args.lineage)
    write_json(args.out, report(result))
    log.info("MLflow run %s", result.run_id)
    log.info("%s version %s -> @%s: %s", result.model_name, result.version, result.alias, result.reason)
    return result


def report(result: RegisterResult) -> dict[str, Any]:
    """``reports/register/<dataset>.json``: the outcome; the gate's evidence (``difference``, ``changes``) where there
    was a champion to compare with, and the new version's own interval where its metric is defined."""
    return {k: v for k, v in asdict(result).items()
            if k not in NOT_REPORTED and not (k in ("difference", "changes", "interval") and not v)}


def get_history_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m stages.register --history NAME``."""
    parser = argparse.ArgumentParser(prog="python -m stages.register",
                                     description="Print a registered model's promotion history: every version's decision, "
                                                 "when, by whom, the version it replaced and why.")
    parser.add_argument("--history", metavar="NAME", required=True, help="a registered model's name, as `mlflow models` lists it")
    return parser


def history(args: argparse.Namespace) -> list[str]:
    """Print the promotion history of ``--history NAME`` (MLFLOW_TRACKING_URI honoured); return its lines."""
    from mlflow import MlflowClient

    open_store(DEFAULT_ROOT, write=False)
    lines = [f"{'version':<5} {'decided (UTC)':<20} {'by':<24} {'decision':<22} reason"]
    lines += [entry.line() for entry in promotion_history(MlflowClient(), args.history)]
    print("\n".join(lines))
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m stages.register`` (or ``--history NAME``): 0, or 1 with one error line."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a == "--history" or a.startswith("--history=") for a in argv):
        return cli.main(get_history_parser(), history, argv)
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
