"""A registered model over HTTP: ``python -m cvpipe.mlops.serve NAME`` (``make serve-model NAME=...``).

Runs ``mlflow models serve`` for ``models:/NAME@champion`` from the project's store
(:func:`cvpipe.mlops.registry.open_store`) in this environment (``--env-manager local``: nothing is fetched
or installed), on 127.0.0.1 unless ``--host`` says otherwise. A model or alias that does not exist is
one ``error:`` line naming what does. ``python -m cvpipe.mlops.serve --request a.png b.jpg`` prints the
JSON body of a ``POST /invocations`` for those files (base64 in ``dataframe_records``:
:mod:`cvpipe.data.model_input`)::

    python -m cvpipe.mlops.serve --request photo.jpg | curl -s http://127.0.0.1:5001/invocations \\
        -H 'Content-Type: application/json' --data-binary @-
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from cvpipe.core import cli
from cvpipe.core.errors import CvpipeError, UsageError

log = logging.getLogger(__name__)
EXAMPLE = """a request (the model answers {"predictions": [...]}, one per image):
  python -m cvpipe.mlops.serve --request photo.jpg | curl -s http://127.0.0.1:5001/invocations \\
      -H 'Content-Type: application/json' --data-binary @-"""


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cvpipe.mlops.serve", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLE)
    parser.add_argument("name", nargs="?", help="registered model (fruits360-classifier, coco-detector, dsb2018-segmenter...)")
    parser.add_argument("--alias", default="champion", help="which version of it (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=int, default=5001, help="(default: %(default)s)")
    parser.add_argument("--request", nargs="+", type=Path, metavar="IMAGE",
                        help="print the JSON request body for these image files instead of serving")
    return parser


def resolve(name: str, alias: str, uri: str) -> str:
    """The version ``models:/name@alias`` points at in the store at ``uri``; a missing model or alias is an error
    naming the registered models or the model's aliases."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":  # a server down or refusing: say that, not "no model"
            raise CvpipeError(f"the registry at {uri} did not answer for {name!r}: {exc.message}") from None
        names = sorted(m.name for m in client.search_registered_models())
        raise CvpipeError(f"no registered model {name!r} in {uri}; registered: {', '.join(names) or 'none (run the pipeline first)'}") \
            from None
    if alias not in model.aliases:
        have = ", ".join(f"@{a} (version {v})" for a, v in sorted(model.aliases.items())) or "none"
        raise CvpipeError(f"registered model {name!r} has no @{alias} version in {uri}; its aliases: {have}")
    return str(model.aliases[alias])


def serve_command(model_uri: str, host: str, port: int) -> list[str]:
    """``mlflow models serve`` of this interpreter's MLflow, in this environment."""
    return [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
            "--host", host, "--port", str(port)]


def serve_env(tracking: str) -> dict[str, str]:
    """This environment, with the store to resolve ``models:/`` against and this interpreter's scripts
    (``uvicorn``, which ``mlflow models serve`` starts) first on PATH; no telemetry, no progress bars."""
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking, MLFLOW_REGISTRY_URI=tracking)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DO_NOT_TRACK", "true")
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return env


def execute(args: argparse.Namespace) -> None:
    from cvpipe.data.model_input import request_body

    if args.request:
        if args.name:
            raise UsageError("give a model name to serve it, or --request IMAGE... to print a request body, not both")
        missing = [str(p) for p in args.request if not p.is_file()]
        if missing:
            raise CvpipeError(f"no such image file: {', '.join(missing)}")
        print(request_body(args.request))
        return
    if not args.name:
        raise UsageError("name the registered model to serve (python -m cvpipe.mlops.serve NAME), or give --request IMAGE...")
    from cvpipe.mlops.registry import open_store

    uri = open_store(write=False)  # a server that does not answer is one line; the registry follows the tracking URI
    version = resolve(args.name, args.alias, uri)
    model_uri = f"models:/{args.name}@{args.alias}"
    _warn_if_pixels(f"models:/{args.name}/{version}")
    log.info("serving %s (version %s) on http://%s:%d/invocations (store %s)", model_uri, version, args.host, args.port, uri)
    command = serve_command(model_uri, args.host, args.port)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, serve_env(uri))


def _warn_if_pixels(model_uri: str) -> None:
    """A version registered before models took image files takes a pixel tensor: say so, serve it anyway."""
    from mlflow.models import get_model_info

    inputs = get_model_info(model_uri).signature
    if inputs is not None and inputs.inputs.is_tensor_spec():
        log.warning("warning: %s takes a uint8 pixel tensor (registered before models took image files) and will not read "
                    "base64 images; a version registered since will (serve it with --alias, e.g. challenger)", model_uri)


def main(argv: list[str] | None = None) -> int:
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
