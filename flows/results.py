"""Prefect flow: the pipeline's last results as Prefect artifacts, read from what its stages wrote.

    python -m flows.results [--root .] [--mlflow-ui http://127.0.0.1:5000]

Per dataset of dvc.yaml's register stages, four artifacts (keys of lowercase letters, digits and dashes,
so the UI's Artifacts page keeps their history): ``gate-<dataset>`` (a table of the gate's checks; the
verdict and the quarantined files in its description, and ``quarantine-<dataset>`` listing them when
there are any), ``metrics-<dataset>`` (a table of metrics.json), ``pictures-<dataset>`` (the evaluation's
PNGs, inline: they show without any other server) and ``model-<dataset>`` (the registry's decision and a
link to the version in the MLflow UI). Nothing runs: a stage that has not run gives an artifact saying so.

The pipeline flow publishes the same artifacts at the end of each run (its failed gates included);
``make ui`` runs this flow once against its Prefect server, so the results of ``make run`` (which has
no Prefect server of its own) show there without a pipeline run.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from cvpipe.core import cli
from cvpipe.report.content import DatasetContent, decision, gather, model_version_url
from stages.summary import Located, locate

ROOT = Path(__file__).resolve().parents[1]


def default_mlflow_ui() -> str:
    """The MLflow UI to link to: the tracking server when it is one, else where `make ui` serves it."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    return uri if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"


def slug(name: str) -> str:
    """A dataset name as an artifact key may hold it (lowercase letters, digits, dashes)."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "dataset"


def content_of(root: Path, found: Located) -> DatasetContent:
    return gather(found.dataset, found.task, root / found.gate_report if found.gate_report else None, root / found.validated,
                  root / found.eval_dir, root / found.register_json, root / found.gate_metrics if found.gate_metrics else None)


def _pictures(content: DatasetContent) -> str:
    if not content.pictures:
        return f"# {content.dataset}: no pictures yet\n\nIts evaluate stage has not run."
    parts = [f"# {content.dataset}: the evaluation's pictures"]
    for picture in content.pictures:
        parts.append(f"## {picture.title}\n\n![{picture.title}]({picture.data_uri()})")
    return "\n\n".join(parts)


def _model(content: DatasetContent, mlflow_ui: str) -> str:
    reg = content.registry
    lines = [f"# {content.dataset}: {decision(reg)}"]
    if reg:
        lines += ["", "| | |", "|---|---|", f"| model | `{reg.get('model_name')}` |", f"| version | {reg.get('version')} |",
                  f"| alias | @{reg.get('alias')} |", f"| {reg.get('metric')} (held-out) | {_number(reg.get('score'))} |"]
        if reg.get("champion_version"):
            lines.append(f"| champion | v{reg['champion_version']}: {_number(reg.get('champion_score'))} |")
        url = model_version_url(mlflow_ui, reg)
        lines += ["", f"[Open {reg.get('model_name')} v{reg.get('version')} in the MLflow UI]({url})"]
    return "\n".join(lines)


def _number(value) -> str:
    return "undefined" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


@task(name="results", task_run_name="results@{content.dataset}", cache_policy=NO_CACHE)
def publish(content: DatasetContent, mlflow_ui: str) -> list[str]:
    """The dataset's artifacts on the Prefect server; their keys."""
    key = slug(content.dataset)
    keys = [f"gate-{key}", f"metrics-{key}", f"pictures-{key}", f"model-{key}"]
    quarantined = "".join(f"\n- `{row.get('file') or row.get('image')}`: {row.get('reason', '')}" for row in content.quarantined[:20])
    more = f"\n- ... and {len(content.quarantined) - 20} more" if len(content.quarantined) > 20 else ""
    create_table_artifact(content.checks or [{"check": "not run", "passed": False}], key=keys[0],
                          description=f"**{content.dataset}** ({content.task}) data gate: {content.gate_verdict}"
                                      + (f"\n\nQuarantined:{quarantined}{more}" if quarantined else ""))
    if content.quarantined:
        create_table_artifact(content.quarantined, key=f"quarantine-{key}",
                              description=f"**{content.dataset}**: the images the gate set aside, and why")
        keys.append(f"quarantine-{key}")
    images = content.metrics.get("images")
    create_table_artifact(content.scalars or [{"metric": "not evaluated yet", "value": ""}], key=keys[1],
                          description=f"**{content.dataset}** ({content.task}): metrics on the held-out split"
                                      + (f" ({images} images)" if images is not None else ""))
    create_markdown_artifact(_pictures(content), key=keys[2], description=f"{content.dataset}: evaluation pictures")
    create_markdown_artifact(_model(content, mlflow_ui), key=keys[3], description=f"{content.dataset}: {decision(content.registry)}")
    return keys


def publish_all(root: Path, mlflow_ui: str, datasets: list[str] | None = None) -> dict[str, list[str]]:
    """Submit :func:`publish` for every dataset of dvc.yaml's register stages (or those named); their keys."""
    futures = {found.dataset: publish.submit(content_of(root, found), mlflow_ui)
               for found in locate(root) if datasets is None or found.dataset in datasets}
    return {name: future.result() for name, future in futures.items()}


@flow(name="results", log_prints=True)
def results(root: str = str(ROOT), mlflow_ui: str | None = None) -> dict[str, list[str]]:
    """Publish the last results of every dataset as artifacts.

    Args:
        root: the project folder whose outputs are shown
        mlflow_ui: the MLflow UI that model links point to (default: the tracking server, else http://127.0.0.1:5000)
    """
    keys = publish_all(Path(root), mlflow_ui or default_mlflow_ui())
    print(f"published {sum(map(len, keys.values()))} artifacts for {', '.join(keys)}")
    return keys


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flows.results", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the project folder (default: this checkout)")
    parser.add_argument("--mlflow-ui", help="the MLflow UI that model links point to (default: the tracking server, else :5000)")
    return parser


def execute(args: argparse.Namespace) -> dict[str, list[str]]:
    locate(args.root)  # a missing or broken dvc.yaml is one line, before a Prefect server starts
    return results(root=str(args.root), mlflow_ui=args.mlflow_ui)


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.results``: 0, or 1 with one error line."""
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
