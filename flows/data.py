"""Prefect flow: the data half of the pipeline for every dataset in ``params.yaml``.

    python -m flows.data        # on Prefect's temporary local server unless PREFECT_API_URL is set

Per dataset: generate the sample if the raw folder is missing, ingest (manifest + class map), then
the data gate. A gate that fails is a data problem, not a flaky one: it is not retried.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from cvpipe.errors import DataError
from cvpipe.params import load_params
from stages import ingest, samples, validate


class GateFailed(RuntimeError):
    """The data gate stopped a dataset; the message is the gate's one-screen summary."""


@task(name="sample", retries=1, cache_policy=NO_CACHE)
def sample_task(name: str, source: str, raw: Path, seed: int) -> list[str]:
    return samples.run({name: source}, raw, seed)


@task(name="ingest", retries=1, cache_policy=NO_CACHE)
def ingest_task(source: str, root: Path, out: Path, workers: int | None, on_bad_annotation: str) -> dict:
    return asdict(ingest.run(source, root, out, workers=workers, on_bad_annotation=on_bad_annotation))


@task(name="validate", cache_policy=NO_CACHE)
def validate_task(name: str, manifests: Path, params: dict, report: Path, out: Path) -> dict:
    spec = params["datasets"][name]
    cfg = validate.config_from_params(params, name, spec["task"], spec["source"])
    v = params.get("validate", {})
    cache = Path(v["cache"]) if v.get("cache") else None
    result, results = validate.run(manifests, cfg, report, out, v.get("on_fail", "stop"), cache=cache, workers=v.get("workers"), name=name)
    summary = validate.format_summary(result, results, report)
    if not result.passed:
        raise GateFailed(summary)
    print(summary)
    return result.metrics()


@flow(name="data", log_prints=True)
def data(
    params_file: Path = Path("params.yaml"),
    raw: Path = Path("data/raw"),
    manifests: Path = Path("data/manifests"),
    validated: Path = Path("data/validated"),
    reports: Path = Path("reports/validate"),
) -> dict[str, dict]:
    """Every dataset: sample if missing, ingest, gate. Returns the gate's counts per dataset."""
    params = load_params(params_file)
    results = {}
    for name, spec in params["datasets"].items():
        sample_task(name, spec["source"], raw, params["samples"]["seed"])
        ingest_task(spec["source"], raw / name, manifests / name, params["ingest"]["workers"], params["ingest"]["on_bad_annotation"])
        results[name] = validate_task(name, manifests / name, params, reports / name, validated / name)
    return results


if __name__ == "__main__":
    try:
        data()
    except (GateFailed, DataError) as exc:
        raise SystemExit(f"error: {exc}") from None
