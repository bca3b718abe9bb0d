"""Register: log the run in MLflow, register the model, and promote it only if it beats the champion.

    python -m stages.register --dataset fruits360 [--lineage dvc.lock]

One MLflow run per pipeline execution (experiment = the dataset): flattened training params,
per-epoch metrics from ``history.csv``, the evaluation metrics and files, the dataset as an input
(``mlflow.log_input``), lineage tags (git commit, data digest, and with ``--lineage`` the DVC hashes
the train stage ran with), and the model (pyfunc, with signature and input example) as a new version
of ``<dataset>-classifier``. Promotion gate: the current ``@champion`` and the new version are both
loaded back from the registry and scored on the same evaluation split; the new version takes
``champion`` only if its macro-F1 is higher by more than ``registry.margin`` and no class's F1
drops by more than ``registry.tolerance``; otherwise it gets ``challenger``. Decision and reason are
tags on the run and the version, and are written to ``reports/register/<dataset>.json``.
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

from cvpipe.errors import DataError
from cvpipe.io import write_json
from cvpipe.params import dataset_task, load_params
from cvpipe.registry import (
    CHALLENGER,
    CHAMPION,
    DEFAULT_ROOT,
    dvc_lineage,
    ensure_experiment,
    flatten,
    git_commit,
    promotion_decision,
)

log = logging.getLogger(__name__)
PIP_REQUIREMENTS = ["torch==2.14.1", "torchvision==0.29.1", "numpy", "pillow"]


@dataclass(frozen=True)
class RegisterResult:
    model_name: str
    version: str
    alias: str
    promoted: bool
    reason: str
    run_id: str
    macro_f1: float
    champion_macro_f1: float | None
    champion_version: str | None


def model_name(dataset: str, task: str = "classification") -> str:
    return f"{dataset}-{'classifier' if task == 'classification' else task}"


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
) -> RegisterResult:
    if task != "classification":
        raise NotImplementedError(f"registration for {task} is not built yet (classification only so far)")
    import mlflow
    import pandas as pd
    import pyarrow.parquet as pq
    from mlflow import MlflowClient

    from cvpipe.classification.data import load_table
    from cvpipe.classification import mlflow_model
    from cvpipe.classification.pyfunc import SIGNATURE

    warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method", category=UserWarning)
    for required in (model_dir / "model.pt", model_dir / "train.json", model_dir / "history.csv", eval_dir / "metrics.json"):
        if not required.is_file():
            raise DataError(required, "not found (run the train and evaluate stages first)")
    trained = json.loads((model_dir / "train.json").read_text(encoding="utf-8"))
    evaluated = json.loads((eval_dir / "metrics.json").read_text(encoding="utf-8"))
    table = load_table(manifest_dir, trained["params"]["val_fraction"])
    name = model_name(dataset, task)
    experiment = ensure_experiment(dataset, mlruns)
    client = MlflowClient()
    tags = {
        "dataset": dataset,
        "task": task,
        "classes": json.dumps(table.classes.names),
        "git.commit": git_commit(),
        "data.digest": table.digest(),
        "params.digest": trained["params_digest"],
    } | (dvc_lineage(lineage, f"train@{dataset}") if lineage else {})
    with mlflow.start_run(experiment_id=experiment, run_name=f"{dataset}-{trained['params']['architecture']}", tags=tags) as active:
        mlflow.log_params(flatten({"train": trained["params"]}) | {"dataset": dataset, "device": trained["device"]})
        with open(model_dir / "history.csv", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                step = int(row.pop("epoch"))
                mlflow.log_metrics({k: float(v) for k, v in row.items()}, step=step)
        mlflow.log_metrics({f"test_{k}": v for k, v in evaluated.items() if isinstance(v, (int, float))})
        mlflow.log_metrics({f"test_f1.{c}": v for c, v in evaluated.get("f1", {}).items()})
        mlflow.log_artifacts(str(eval_dir), "evaluation")
        mlflow.log_artifact(str(model_dir / "train.json"), "training")
        mlflow.log_artifact(str(model_dir / "history.csv"), "training")
        manifest = pq.read_table(manifest_dir / "manifest.parquet", columns=["path", "split", "label", "sha256"]).to_pandas()
        with warnings.catch_warnings():  # a local path matches two equivalent MLflow source types; either is right
            warnings.simplefilter("ignore", UserWarning)
            data = mlflow.data.from_pandas(manifest, source=str(manifest_dir.resolve()), name=dataset, targets="label")
        mlflow.log_input(data, context="training")
        example = _example_images(table, trained["params"]["image_size"])
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(Path(mlflow_model.__file__)), artifacts={"model": str(model_dir / "model.pt")},
            signature=SIGNATURE, input_example=example, code_paths=[str(Path(__file__).resolve().parents[1] / "cvpipe")],
            pip_requirements=PIP_REQUIREMENTS, registered_model_name=name,
        )
        version = str(info.registered_model_version)
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)

        # the gate: both models as the registry serves them, on the same images
        idx = table.indices(split)
        truth = [table.classes.names[k] for k in table.labels[idx]]
        images = [_rgb(table.files[k]) for k in idx]
        new_scores = _registry_scores(f"models:/{name}/{version}", images, truth, table.classes.names)
        champion = _alias_version(client, name, CHAMPION)
        champ_scores = _registry_scores(f"models:/{name}@{CHAMPION}", images, truth, table.classes.names) if champion else None
        decision = promotion_decision(new_scores.macro_f1, new_scores.f1_by_class(),
                                      champ_scores.macro_f1 if champ_scores else None,
                                      champ_scores.f1_by_class() if champ_scores else None, margin, tolerance)
        alias = CHAMPION if decision.promote else CHALLENGER
        client.set_registered_model_alias(name, alias, version)
        gate = {
            "promotion.decision": alias,
            "promotion.reason": decision.reason,
            "promotion.macro_f1": f"{new_scores.macro_f1:.6f}",
            "promotion.champion_version": champion or "",
            "promotion.champion_macro_f1": f"{champ_scores.macro_f1:.6f}" if champ_scores else "",
        }
        mlflow.set_tags(gate)
        for key, value in gate.items():
            client.set_model_version_tag(name, version, key, value)
        result = RegisterResult(name, version, alias, decision.promote, decision.reason, active.info.run_id,
                                round(new_scores.macro_f1, 6), round(champ_scores.macro_f1, 6) if champ_scores else None, champion)
    return result


def _rgb(file: Path):
    import numpy as np

    from cvpipe.pil import open_image

    with open_image(file) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _example_images(table, size: int):
    import numpy as np

    from cvpipe.classification.data import decode_resized

    return np.stack([decode_resized(table.files[k], size) for k in table.indices("train")[:2]])


def _alias_version(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _registry_scores(uri: str, images: list, truth: list[str], names: list[str]):
    """Scores of the registered model at ``uri``, loaded as anyone would load it."""
    import mlflow.pyfunc
    import numpy as np

    from cvpipe.classification.evaluate import score

    model = mlflow.pyfunc.load_model(uri)
    predicted = [model.predict(image[None])[0] for image in images]  # one at a time: the images differ in size
    index = {n: k for k, n in enumerate(names)}
    # a name the dataset does not have (an older class map) is wrong for every true class
    pred = np.array([index.get(p, -1) for p in predicted])
    true = np.array([index[t] for t in truth])
    return score(true, np.where(pred < 0, (true + 1) % len(names), pred), names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.register", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--eval-dir", type=Path)
    parser.add_argument("--manifest-dir", type=Path)
    parser.add_argument("--lineage", type=Path, help="dvc.lock: tag the run with the DVC hashes the train stage ran with")
    parser.add_argument("--out", type=Path, help="default: reports/register/<dataset>.json")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        params = load_params(args.params)
        registry = params.get("registry", {})
        result = run(args.dataset, dataset_task(params, args.dataset), args.model_dir or Path("models") / args.dataset,
                     args.eval_dir or Path("reports/evaluate") / args.dataset, args.manifest_dir or Path("data/validated") / args.dataset,
                     registry.get("margin", 0.0), registry.get("tolerance", 0.05), args.lineage)
    except (DataError, ValueError, NotImplementedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # the outcome without the run id: the same bytes for the same outcome, so dvc.lock can hold it
    write_json(args.out or Path("reports/register") / f"{args.dataset}.json", {k: v for k, v in asdict(result).items() if k != "run_id"})
    log.info("MLflow run %s", result.run_id)
    log.info("%s version %s -> @%s: %s", result.model_name, result.version, result.alias, result.reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
