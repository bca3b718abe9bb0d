"""Export: a registered model as ONNX or TorchScript, for runtimes outside Python's MLflow.

    python -m stages.export --model NAME[@ALIAS|/VERSION] --format onnx|torchscript --out DIR

The model is read from the registry (``MLFLOW_TRACKING_URI`` honoured; default alias ``champion``) and
loaded as anyone would load it; its task (the version's ``task`` tag) writes the network (``torch.onnx`` /
``torch.jit``, or ultralytics' own exporter) and states how to feed it and read it (README, "Exporting a
model"). ``DIR`` receives, as one unit, ``model.onnx`` or ``model.torchscript`` and ``export.json``: the model's
name, version and alias, its lineage tags, the input (shape, channels, range), the preprocessing and
normalisation, the output and the class names. Both files are logged to the version's MLflow run under
``export/<format>/`` and the version is tagged ``export.<format>`` with their location.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from cvpipe.core import cli
from cvpipe.core.io import staged_dir, write_json
from cvpipe.mlops.registry import DEFAULT_ROOT, RegistryError, find_registered, open_store
from cvpipe.tasks import get_task
from cvpipe.tasks.export import FORMATS

log = logging.getLogger(__name__)
LINEAGE = ("dataset", "task", "classes", "git.commit", "data.digest", "params.digest")  # tags export.json carries


@dataclass(frozen=True)
class ExportResult:
    name: str
    version: str
    alias: str | None
    format: str
    file: Path  # the exported network
    artifact_uri: str  # where the version's run holds it


def run(model: str, fmt: str, out: Path, mlruns: Path = DEFAULT_ROOT) -> ExportResult:
    """Export the registered model ``model`` (see the module's docstring) to ``out``."""
    if fmt not in FORMATS:
        raise RegistryError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    store = open_store(mlruns)  # the files are logged to the version's run: a store that can be written
    from mlflow import MlflowClient

    client = MlflowClient()
    registered = find_registered(client, store, model)
    ref, version = registered.ref, registered.version
    implementation, loaded = get_task(registered.task), registered.load()
    with staged_dir(out) as staging:
        meta = implementation.export(loaded, fmt, staging)
        lineage = {k: version.tags[k] for k in LINEAGE if k in version.tags} | \
            {k: v for k, v in version.tags.items() if k.startswith("dvc.")}
        if "classes" in lineage:
            lineage["classes"] = json.loads(lineage["classes"])
        write_json(staging / "export.json", {"model": ref.name, "version": str(version.version), "alias": ref.alias,
                                             "format": fmt, "run_id": version.run_id} | meta | {"lineage": lineage})
    artifact_uri = ""
    if version.run_id:
        client.log_artifacts(version.run_id, str(out), f"export/{fmt}")
        artifact_uri = f"runs:/{version.run_id}/export/{fmt}/{meta['file']}"
        client.set_model_version_tag(ref.name, version.version, f"export.{fmt}", artifact_uri)
    return ExportResult(ref.name, str(version.version), ref.alias, fmt, out / meta["file"], artifact_uri)


def get_args_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m stages.export``."""
    parser = argparse.ArgumentParser(prog="python -m stages.export", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="NAME[@ALIAS|/VERSION] of a registered model (alias default: champion)")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (default) or torchscript")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write (replaced as one unit)")
    return parser


def execute(args: argparse.Namespace) -> ExportResult:
    result = run(args.model, args.format, args.out)
    log.info("%s version %s -> %s (%.1f MB)%s", result.name, result.version, result.file, result.file.stat().st_size / 1e6,
             f", logged as {result.artifact_uri}" if result.artifact_uri else "")
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m stages.export``: 0, or 1 with one error line."""
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
