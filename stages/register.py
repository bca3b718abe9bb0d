"""Register: log the run in MLflow, register the model, and promote it only if it beats the champion.

    python -m stages.register --dataset fruits360 [--lineage dvc.lock]

One MLflow run per pipeline execution (experiment = the dataset): flattened training params,
per-epoch metrics from ``history.csv``, the evaluation metrics and files, the dataset as an input
(``mlflow.log_input``), lineage tags (git commit, data digest, and with ``--lineage`` the DVC hashes
the train stage ran with), and the task's model (pyfunc, with signature and input example) as a new
version of ``<dataset>-<kind>`` (``fruits360-classifier``). Promotion gate: the current ``@champion``
and the new version are both loaded back from the registry and scored on the same evaluation split;
the new version takes ``champion`` only if the task's primary metric (macro-F1 for classification)
is higher by more than ``registry.margin`` and no class's score drops by more than
``registry.tolerance``; otherwise it gets ``challenger``. Decision and reason are tags on the run
and the version, and are written to ``reports/register/<dataset>.json``.

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
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from cvpipe.core import cli
from cvpipe.core.errors import DataError, ParamsError
from cvpipe.core.io import write_json
from cvpipe.core.params import cpu_threads, load_params, lookup, mapping, registry_settings
from cvpipe.data.manifest import read_manifest_dir
from cvpipe.mlops.registry import (
    CHALLENGER,
    CHAMPION,
    DEFAULT_ROOT,
    REPLACES_TAG,
    Reconciled,
    alias_version,
    dvc_lineage,
    ensure_experiment,
    flatten,
    git_commit,
    process_tags,
    promotion_decision,
    reconcile,
)
from cvpipe.tasks import dataset_task, get_task

log = logging.getLogger(__name__)
# not in the report: it holds the outcome, the same bytes for the same outcome, so dvc.lock can hold it
NOT_REPORTED = ("run_id", "reconciled_runs", "reconciled_versions")


@dataclass(frozen=True)
class RegisterResult:
    model_name: str
    version: str
    alias: str
    promoted: bool
    reason: str
    run_id: str
    metric: str
    score: float
    champion_score: float | None
    champion_version: str | None
    reconciled_runs: tuple[str, ...] = ()  # runs of killed earlier attempts, ended as KILLED before this one
    reconciled_versions: tuple[str, ...] = ()  # their versions, marked abandoned


def run(
    dataset: str,
    task: str,
    model_dir: Path,
    eval_dir: Path,
    manifest_dir: Path,
    margin: float = 0.0,
    tolerance: float = 0.05,
    lineage: Path | None = None,
    mlruns: Path = DEFAULT_ROOT,
    split: str = "test",
    data_dir: Path | None = None,
    settings: dict | None = None,
) -> RegisterResult:
    """Log, register and gate the model in ``model_dir`` (see the module's docstring). ``manifest_dir`` is the
    validated manifest (the run's dataset input); ``data_dir`` what the task reads (default: ``manifest_dir``);
    ``settings`` the task's ``<task>.evaluate`` section (segmentation serves the instance settings it was evaluated with)."""
    implementation = get_task(task)
    data_dir = data_dir or manifest_dir
    manifest = read_manifest_dir(manifest_dir, task=task, columns=["path", "split", "label", "sha256"])
    for required in (model_dir / "train.json", model_dir / "history.csv", eval_dir / "metrics.json"):
        if not required.is_file():
            raise DataError(required, "not found (run the train and evaluate stages first)")
    trained = _json(model_dir / "train.json")
    evaluated = _json(eval_dir / "metrics.json")
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
        table = manifest.images.to_pandas()
        with warnings.catch_warnings():  # a local path matches two equivalent MLflow source types; either is right
            warnings.simplefilter("ignore", UserWarning)
            data = mlflow.data.from_pandas(table, source=str(manifest_dir.resolve()), name=dataset,
                                           targets="label" if table["label"].notna().any() else None)
        mlflow.log_input(data, context="training")
        logged = implementation.log_model(model_dir, data_dir, name, settings)
        version = logged.version
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)

        # the gate: both models as the registry serves them, on the same images
        new = implementation.score(f"models:/{name}/{version}", data_dir, split, trained["params"])
        champion = alias_version(client, name, CHAMPION)
        old = implementation.score(f"models:/{name}@{CHAMPION}", data_dir, split, trained["params"]) if champion else None
        metric = implementation.primary_metric
        decision = promotion_decision(new.primary, new.per_group, old.primary if old else None, old.per_group if old else None,
                                      margin, tolerance, metric, implementation.group_name)
        alias = CHAMPION if decision.promote else CHALLENGER
        gate = {
            "promotion.decision": alias,
            "promotion.reason": decision.reason,
            "promotion.metric": metric,
            f"promotion.{metric}": f"{new.primary:.6f}",
            "promotion.champion_version": champion or "",
            f"promotion.champion_{metric}": f"{old.primary:.6f}" if old else "",
            REPLACES_TAG: alias_version(client, name, alias) or "",
        }
        # the version's tags before the alias: a run killed after moving the alias must say where it was
        for key, value in gate.items():
            client.set_model_version_tag(name, version, key, value)
        client.set_registered_model_alias(name, alias, version)
        mlflow.set_tags(gate)
        result = RegisterResult(name, version, alias, decision.promote, decision.reason, active.info.run_id, metric,
                                round(new.primary, 6), round(old.primary, 6) if old else None, champion,
                                reconciled.runs, reconciled.versions)
    return result


def _log_reconciled(reconciled: Reconciled, name: str) -> None:
    if reconciled.runs or reconciled.versions:
        log.info("register: reconciled %s and %s of %s", _count(reconciled.runs, "interrupted run"),
                 _count(reconciled.versions, "undecided version"), name)
    if reconciled.live:
        log.info("register: left %s of %s RUNNING: %s (their process may be alive)",
                 _count(reconciled.live, "run"), name, ", ".join(reconciled.live))


def _count(items: tuple[str, ...], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(path, f"malformed JSON: {exc}") from exc


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stages.register", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a dataset listed in params.yaml")
    parser.add_argument("--model-dir", type=Path, help="default: models/<dataset>")
    parser.add_argument("--eval-dir", type=Path, help="default: reports/evaluate/<dataset>")
    parser.add_argument("--manifest-dir", type=Path,
                        help="the validated manifest, logged as the run's input (default: data/validated/<dataset>)")
    parser.add_argument("--data-dir", type=Path, help="what the task reads (default: <its data_root>/<dataset>)")
    parser.add_argument("--lineage", type=Path, help="dvc.lock: tag the run with the DVC hashes the train stage ran with")
    parser.add_argument("--out", type=Path, help="default: reports/register/<dataset>.json")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    return parser


def execute(args: argparse.Namespace) -> RegisterResult:
    params = load_params(args.params)
    from cvpipe.tasks.training import set_cpu_threads  # torch, only when a stage really runs

    set_cpu_threads(cpu_threads(params))  # the gate's scores computed as evaluate computed them
    task = dataset_task(params, args.dataset)
    margin, tolerance = registry_settings(params)
    manifest_dir = args.manifest_dir or Path("data/validated") / args.dataset
    data_root = Path(get_task(task).data_root)
    # a task that reads the validated manifest itself reads the one given with --manifest-dir
    data_dir = args.data_dir or (manifest_dir if data_root == Path("data/validated") else data_root / args.dataset)
    settings = mapping(lookup(params, f"{task}.evaluate", {}), f"{task}.evaluate")
    try:
        result = run(args.dataset, task, args.model_dir or Path("models") / args.dataset,
                     args.eval_dir or Path("reports/evaluate") / args.dataset, manifest_dir,
                     margin, tolerance, args.lineage, data_dir=data_dir, settings=settings)
    except ParamsError as exc:
        raise exc.under(f"{task}.evaluate", args.params) from None
    write_json(args.out or Path("reports/register") / f"{args.dataset}.json",
               {k: v for k, v in asdict(result).items() if k not in NOT_REPORTED})
    log.info("MLflow run %s", result.run_id)
    log.info("%s version %s -> @%s: %s", result.model_name, result.version, result.alias, result.reason)
    return result


def main(argv: list[str] | None = None) -> int:
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
