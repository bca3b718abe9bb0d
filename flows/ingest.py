"""Prefect flow: generate any missing sample, then ingest every dataset of ``params.yaml``.

    python -m flows.ingest          # runs on Prefect's temporary local server unless PREFECT_API_URL is set
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from cvpipe.params import load_params
from stages import ingest, samples


@task(name="sample", retries=1, cache_policy=NO_CACHE)
def sample_task(name: str, source: str, raw: Path, seed: int) -> list[str]:
    return samples.run({name: source}, raw, seed)


@task(name="ingest", retries=1, cache_policy=NO_CACHE)
def ingest_task(source: str, root: Path, out: Path, workers: int | None) -> dict:
    return asdict(ingest.run(source, root, out, workers=workers))


@flow(name="ingest-all", log_prints=True)
def ingest_all(params_file: Path = Path("params.yaml"), raw: Path = Path("data/raw"), out: Path = Path("data/manifests")) -> dict[str, dict]:
    """Every dataset listed in ``params.yaml``: sample if missing, then manifest and class map."""
    params = load_params(params_file)
    results = {}
    for name, spec in params["datasets"].items():
        sample_task(name, spec["source"], raw, params["samples"]["seed"])
        results[name] = ingest_task(spec["source"], raw / name, out / name, params["ingest"]["workers"])
        print(f"{name}: {results[name]['images']} images, {results[name]['classes']} classes")
    return results


if __name__ == "__main__":
    ingest_all()
