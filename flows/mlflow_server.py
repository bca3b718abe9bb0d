"""``make mlflow-server``: a shared MLflow tracking server on PostgreSQL, its artifacts in S3.

    python -m flows.mlflow_server [--host 127.0.0.1] [--port 5000] [--data .mlflow-server]
                                  [--artifacts-destination s3://bucket/prefix]

With ``--artifacts-destination``, artifacts go to that bucket with the credentials of the environment
or an AWS profile (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``) and, for an
S3-compatible store, ``MLFLOW_S3_ENDPOINT_URL``; the runs, models and aliases are kept in PostgreSQL
under ``--data`` (kept between starts). Without it, a local sandbox: moto's S3 server on loopback
and a PostgreSQL in a temporary folder, both discarded when the server stops (moto keeps objects in
memory, so no record may outlive its artifacts).

Clients need only ``MLFLOW_TRACKING_URI=http://HOST:PORT``: the server proxies artifacts, so S3
credentials stay with it. The pipeline (register, promotion gate, ``models:/<name>@champion``) runs
unchanged against it. Ctrl-C, SIGTERM or SIGHUP stops all of it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from cvpipe.core import cli
from cvpipe.core.errors import CvpipeError
from cvpipe.mlops.servers import S3_ENV, check_bucket, port_free, start_local_s3, start_postgres, start_tracking_server
from cvpipe.mlops.ui import interrupt_on_termination, stop

# The sandbox's moto accepts any credentials; these are not secrets and are used for nothing else.
SANDBOX_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "cvpipe-sandbox", "AWS_SECRET_ACCESS_KEY": "cvpipe-sandbox", "AWS_DEFAULT_REGION": "us-east-1"}
SANDBOX_BUCKET = "s3://mlflow/artifacts"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flows.mlflow_server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--data", type=Path, default=Path(".mlflow-server"), help="PostgreSQL's data folder and the logs")
    parser.add_argument("--artifacts-destination", help="s3://bucket/prefix (default: a local sandbox S3 on loopback)")
    parser.add_argument("--workers", type=cli.positive_int, default=2, help="the tracking server's worker processes")
    return parser


def server_env(sandbox_endpoint: str | None) -> dict[str, str]:
    """The tracking server's environment: ours, with the sandbox's S3 in place of any configured one."""
    env = dict(os.environ)
    if sandbox_endpoint:
        for key in S3_ENV:
            env.pop(key, None)
        env |= SANDBOX_CREDENTIALS | {"MLFLOW_S3_ENDPOINT_URL": sandbox_endpoint}
    return env


def execute(args: argparse.Namespace) -> None:
    if args.artifacts_destination:
        destination, endpoint, env = args.artifacts_destination, None, server_env(None)
        check_bucket(destination, env)  # not s3://, no credentials or no bucket: one line, before anything starts
    if not port_free(args.host, args.port):  # else the health check could see another server and call it ours
        raise CvpipeError(f"{args.host}:{args.port} is in use (make ui's MLflow?); give another --port")
    interrupt_on_termination()
    procs, postgres, scratch = [], None, None
    args.data.mkdir(parents=True, exist_ok=True)
    logs = args.data.resolve()
    try:
        if args.artifacts_destination:
            pgdata = args.data / "pgdata"
        else:
            s3, endpoint = start_local_s3("127.0.0.1", log=logs / "s3.log")  # only the tracking server talks to it
            procs.append(s3)
            destination, env = SANDBOX_BUCKET, server_env(endpoint)
            check_bucket(destination, env, create=True)
            scratch = tempfile.TemporaryDirectory(prefix="cvpipe-mlflow-sandbox-")
            pgdata = Path(scratch.name) / "pgdata"
        postgres = start_postgres(pgdata)
        procs.append(start_tracking_server(postgres.uri, destination, args.host, args.port, env, args.workers,
                                           log=logs / "mlflow-server.log"))
        where = f"artifacts {destination}" + (f" on the sandbox S3 at {endpoint} (discarded at stop)" if endpoint else "")
        print(f"MLflow tracking server: http://{args.host}:{args.port}", flush=True)
        print(f"  runs and models: PostgreSQL {postgres.pgdata}{' (discarded at stop)' if scratch else ''}; {where}", flush=True)
        print(f"  logs: {logs}/mlflow-server.log", flush=True)
        print(f"  export MLFLOW_TRACKING_URI=http://{args.host}:{args.port}   # then dvc repro, make flow, ...", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        raise CvpipeError(f"a server exited; see {logs}")
    except RuntimeError as exc:  # a server did not come up
        raise CvpipeError(f"{exc}; see the logs in {logs}") from exc
    except KeyboardInterrupt:
        pass
    finally:
        stop(procs)
        if postgres is not None:
            postgres.stop()
        if scratch is not None:
            scratch.cleanup()


def main(argv: list[str] | None = None) -> int:
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
