"""The MLflow and Prefect servers on 127.0.0.1 (unless told otherwise): started, waited for, stopped.

``make ui`` (:mod:`flows.ui`) and ``make serve`` (:mod:`flows.deploy`) use these. The MLflow server
reads the project's store (``mlruns/mlflow.db``, artifacts under ``mlruns/artifacts``) or
``MLFLOW_TRACKING_URI``; Prefect's keeps its database under ``PREFECT_HOME``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cvpipe.mlops.registry import DEFAULT_ROOT, tracking_uri


def answers(url: str, timeout: float = 2) -> bool:
    """Does a server answer ``url`` without a server error?"""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status < 500
    except OSError:
        return False


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before answering on {url}")
        if answers(url):
            return
        time.sleep(0.5)
    raise RuntimeError(f"nothing answered on {url} within {timeout:.0f} s")


def start_process(cmd: list[str], health: str, timeout: float, env: dict | None = None, log: Path | None = None) -> subprocess.Popen:
    """``cmd`` in its own session (so :func:`stop` ends it and its children), once ``health`` answers;
    its output goes to ``log`` when given (appended), else to ours."""
    out = open(log, "ab") if log is not None else None  # noqa: SIM115 - the child holds it
    try:
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT if out else None)
    finally:
        if out is not None:
            out.close()
    try:
        wait_until_up(health, proc, timeout)
    except BaseException:
        stop([proc])
        raise
    return proc


def start_mlflow(host: str, port: int, timeout: float = 120) -> subprocess.Popen:
    """``mlflow server`` on the project's store, answering on ``host:port``."""
    store = tracking_uri(DEFAULT_ROOT)
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", store, "--host", host, "--port", str(port)]
    if store.startswith("sqlite:"):
        cmd += ["--default-artifact-root", (DEFAULT_ROOT / "artifacts").resolve().as_uri()]
    return start_process(cmd, f"http://{host}:{port}/health", timeout)


def start_prefect(host: str, port: int, timeout: float = 120) -> subprocess.Popen:
    """``prefect server start`` answering on ``host:port`` (no analytics calls)."""
    env = {**os.environ, "PREFECT_UI_API_URL": f"http://{host}:{port}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_CLI_PROMPT": "false"}
    env.pop("PREFECT_API_URL", None)
    cmd = [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", host, "--port", str(port)]
    return start_process(cmd, f"http://{host}:{port}/api/health", timeout, env)


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def interrupt_on_termination() -> None:
    """SIGTERM and SIGHUP end this process as Ctrl-C does, so the servers it started stop with it."""
    def handler(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)
