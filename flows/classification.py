"""Prefect flow: the classification pipelines (validate, train, evaluate, register) for every dataset
under ``train.datasets`` in params.yaml, calling the same stage functions as ``dvc repro``.

    python -m flows.classification                     # once, on Prefect's temporary local server
    python -m flows.classification --serve --cron "0 3 * * *"   # a deployment with a schedule (Prefect UI)

Train, evaluate and register are cached on content: the key is a digest of the files they read,
their parameters and the source code of the stages and library modules they run, so a rerun with
nothing changed completes from the cache (state ``Cached``) without training or registering again.
A task whose output folder has gone missing refreshes its cache entry instead of trusting it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from prefect import flow, task

from cvpipe.params import load_params
from cvpipe.registry import tracking_uri
from flows.data import ingest_task, sample_task, validate_task
from stages import evaluate, register, train

ROOT = Path(__file__).resolve().parents[1]
CODE = {
    "train": ["stages/train.py", "cvpipe/training.py", "cvpipe/classification/data.py", "cvpipe/classification/models.py",
              "cvpipe/classification/fit.py"],
    "evaluate": ["stages/evaluate.py", "cvpipe/classification/evaluate.py", "cvpipe/classification/fit.py"],
    "register": ["stages/register.py", "cvpipe/registry.py", "cvpipe/classification/pyfunc.py"],
}


def content_digest(*items: Path | str | dict | list) -> str:
    """sha256 over files (every file under a folder, by relative name and bytes) and JSON-able values."""
    h = hashlib.sha256()
    for item in items:
        if isinstance(item, Path):
            files = sorted(p for p in item.rglob("*") if p.is_file()) if item.is_dir() else [item]
            for f in files:
                h.update(str(f.relative_to(item) if item.is_dir() else f.name).encode())
                h.update(hashlib.sha256(f.read_bytes()).digest() if f.exists() else b"missing")
        else:
            h.update(json.dumps(item, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _code(stage: str) -> list[Path]:
    return [ROOT / p for p in CODE[stage]]


def train_key(context, parameters) -> str:
    p = parameters
    return "train-" + content_digest(Path(p["manifest_dir"]), p["params"], p["device"], str(p["out"]), *_code("train"))


def evaluate_key(context, parameters) -> str:
    p = parameters
    return "evaluate-" + content_digest(Path(p["model_dir"]), Path(p["manifest_dir"]), str(p["out"]), *_code("evaluate"))


def register_key(context, parameters) -> str:
    p = parameters
    return "register-" + content_digest(Path(p["model_dir"]), Path(p["eval_dir"]) / "metrics.json", p["margin"], p["tolerance"],
                                        p["dataset"], tracking_uri(), *_code("register"))


@task(name="train", retries=1, retry_delay_seconds=5, cache_key_fn=train_key, persist_result=True)
def train_task(task_name: str, manifest_dir: Path, out: Path, params: dict, device: str, cache_dir: Path | None) -> dict:
    # a retry resumes from the checkpoint the failed attempt left under cache_dir
    return asdict(train.run(task_name, manifest_dir, out, params, device, cache_dir))


@task(name="evaluate", retries=1, cache_key_fn=evaluate_key, persist_result=True)
def evaluate_task(task_name: str, model_dir: Path, manifest_dir: Path, out: Path, device: str, cache_dir: Path | None, title: str) -> dict:
    return evaluate.run(task_name, model_dir, manifest_dir, out, "test", device, cache_dir, title).metrics


@task(name="register", retries=2, retry_delay_seconds=5, cache_key_fn=register_key, persist_result=True)
def register_task(dataset: str, task_name: str, model_dir: Path, eval_dir: Path, manifest_dir: Path, margin: float, tolerance: float) -> dict:
    return asdict(register.run(dataset, task_name, model_dir, eval_dir, manifest_dir, margin, tolerance))


@flow(name="classification", log_prints=True)
def classification(
    datasets: list[str] | None = None,
    params_file: Path = Path("params.yaml"),
    raw: Path = Path("data/raw"),
    data: Path = Path("data"),
    models: Path = Path("models"),
    reports: Path = Path("reports"),
) -> dict[str, dict]:
    """Per dataset: sample if missing, ingest, gate, train, evaluate, register. Returns each dataset's
    evaluation metrics and registration outcome."""
    params = load_params(params_file)
    common = params.get("train", {})
    device, cache_dir = train.settings(params)
    registry = params.get("registry", {})
    results = {}
    for name in datasets or list(common.get("datasets", {})):
        spec = params["datasets"][name]
        manifests, validated = data / "manifests" / name, data / "validated" / name
        sample_task(name, spec["source"], raw, params["samples"]["seed"])
        ingest_task(spec["source"], raw / name, manifests, params["ingest"]["workers"], params["ingest"]["on_bad_annotation"])
        validate_task(name, manifests, params, reports / "validate" / name, validated)
        model_dir, eval_dir = models / name, reports / "evaluate" / name
        _, section = train.dataset_params(params, name)
        train_task.with_options(refresh_cache=not (model_dir / "model.pt").is_file())(
            spec["task"], validated, model_dir, section, device, cache_dir)
        metrics = evaluate_task.with_options(refresh_cache=not (eval_dir / "metrics.json").is_file())(
            spec["task"], model_dir, validated, eval_dir, device, cache_dir, name)
        outcome = register_task(name, spec["task"], model_dir, eval_dir, validated, registry.get("margin", 0.0), registry.get("tolerance", 0.05))
        results[name] = {"metrics": metrics, "register": outcome}
        print(f"{name}: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}; "
              f"{outcome['model_name']} v{outcome['version']} -> @{outcome['alias']} ({outcome['reason']})")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.classification", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", help="only this dataset (repeatable); default: all under train.datasets")
    parser.add_argument("--serve", action="store_true", help="serve a deployment (schedule shown in the Prefect UI) instead of one run")
    parser.add_argument("--cron", default="0 3 * * *", help="schedule for --serve (default: daily at 03:00)")
    args = parser.parse_args(argv)
    if args.serve:
        classification.serve(name="classification-nightly", cron=args.cron, parameters={"datasets": args.dataset})
    else:
        classification(datasets=args.dataset)


if __name__ == "__main__":
    main()
