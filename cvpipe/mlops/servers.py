"""A team's MLflow: a tracking server on PostgreSQL with its artifacts in S3, all started and stopped here.

``make mlflow-server`` (:mod:`flows.mlflow_server`) uses these; nothing here is a server of our own:
PostgreSQL comes from the ``pgserver`` wheel (its own binaries, a Unix socket only, no TCP port),
the S3-compatible server for local use is moto's, and the tracking server is ``mlflow server``
proxying artifacts (clients need only ``MLFLOW_TRACKING_URI``; the S3 credentials stay with the
server). S3 endpoint and credentials come only from the environment or an AWS profile (boto3's own
chain: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``MLFLOW_S3_ENDPOINT_URL``
for an S3-compatible store); they are never written to a file, a command line or a log here.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cvpipe.core.errors import CvpipeError
from cvpipe.mlops.ui import start_process

# Variables that reach the S3 client of the tracking server (and nothing else of ours).
S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION",
          "AWS_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_S3_IGNORE_TLS")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_free(host: str, port: int) -> bool:
    """Can a server bind ``host:port`` now?"""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class Postgres:
    """A running PostgreSQL (``pgserver``) and the SQLAlchemy URI of one database on it."""

    server: Any
    uri: str
    pgdata: Path

    def stop(self) -> None:
        self.server.cleanup()  # pg_ctl stop, once the last handle in any process is gone


def start_postgres(pgdata: Path, database: str = "mlflow") -> Postgres:
    """PostgreSQL on the data folder ``pgdata`` (created and initialised when new), with ``database`` in it.

    It listens on a Unix socket only; as root, pgserver runs it as its own ``pgserver`` system user."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset on servers
        import pgserver
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # not every command it runs

    if not database.isidentifier():
        raise CvpipeError(f"database name {database!r}: letters, digits and _ only")
    pgdata = pgdata.resolve()
    socket_file = pgdata / ".s.PGSQL.5432"
    if len(os.fsencode(socket_file)) > 100:  # pgserver would put the socket in a shared folder anyone may enter
        raise CvpipeError(f"{pgdata}: too long a path for PostgreSQL's Unix socket ({len(os.fsencode(socket_file))} bytes "
                          "with its name, at most 100); give a shorter --data")
    pgdata.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        raise CvpipeError(f"{pgdata}: PostgreSQL did not start ({exc}); its log is {pgdata / 'log'}") from exc
    if "(1 row)" not in server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';"):
        server.psql(f"CREATE DATABASE {database};")
    uri = server.get_uri(database=database).replace("postgresql://postgres:@", "postgresql+psycopg2://postgres@", 1)
    return Postgres(server, uri, pgdata)


def start_local_s3(host: str = "127.0.0.1", port: int | None = None, log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """moto's S3-compatible server on ``host:port`` (a free port if None); returns it and its endpoint URL.

    It keeps objects in memory: they are gone when it stops."""
    port = port or free_port(host)
    cmd = [str(Path(sys.executable).parent / "moto_server"), "-H", host, "-p", str(port)]
    endpoint = f"http://{host}:{port}"
    return start_process(cmd, f"{endpoint}/moto-api/", 60, log=log), endpoint


def s3_client(endpoint: str | None = None, env: dict[str, str] | None = None):
    """A boto3 S3 client from the environment's credentials (or an AWS profile), at ``endpoint`` if given."""
    import boto3

    env = os.environ if env is None else env
    session = boto3.session.Session(aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"), aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
                                    aws_session_token=env.get("AWS_SESSION_TOKEN"), profile_name=env.get("AWS_PROFILE"),
                                    region_name=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1")
    return session.client("s3", endpoint_url=endpoint or env.get("MLFLOW_S3_ENDPOINT_URL") or None)


def check_bucket(destination: str, env: dict[str, str], create: bool = False) -> None:
    """Can the tracking server write to ``s3://bucket/prefix``? One line naming the bucket if not."""
    from botocore.exceptions import BotoCoreError, ClientError

    parsed = urlparse(destination)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise CvpipeError(f"--artifacts-destination {destination!r}: expected s3://bucket/prefix")
    bucket = parsed.netloc
    try:
        client = s3_client(env=env)
        if create:
            existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)
        client.head_bucket(Bucket=bucket)
    except (BotoCoreError, ClientError) as exc:  # no credentials, no bucket, endpoint down: say which
        endpoint = env.get("MLFLOW_S3_ENDPOINT_URL") or "AWS S3"
        raise CvpipeError(f"s3://{bucket} at {endpoint}: {exc} (credentials come from AWS_ACCESS_KEY_ID/"
                          "AWS_SECRET_ACCESS_KEY or AWS_PROFILE, the endpoint from MLFLOW_S3_ENDPOINT_URL)") from exc


def start_tracking_server(backend: str, artifacts: str, host: str, port: int, env: dict[str, str], workers: int = 2,
                          log: Path | None = None, timeout: float = 180) -> subprocess.Popen:
    """``mlflow server`` on ``backend`` (a database URI), proxying artifacts to ``artifacts`` (s3://...)."""
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend, "--artifacts-destination", artifacts,
           "--host", host, "--port", str(port), "--workers", str(workers)]
    return start_process(cmd, f"http://{host}:{port}/health", timeout, env=env, log=log)
