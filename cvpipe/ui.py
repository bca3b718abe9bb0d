"""``make ui``: the MLflow UI and the Prefect UI, on 127.0.0.1 unless told otherwise, until Ctrl-C.

    python -m cvpipe.ui [--host 127.0.0.1] [--mlflow-port 5000] [--prefect-port 4200]

The MLflow UI reads the project's store (``mlruns/mlflow.db``, artifacts under ``mlruns/artifacts``)
or ``MLFLOW_TRACKING_URI``. Both servers are waited for until they answer, then their addresses are
printed; stopping this process stops both.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cvpipe.registry import DEFAULT_ROOT, tracking_uri


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before answering on {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"nothing answered on {url} within {timeout:.0f} s")


def start(host: str, mlflow_port: int, prefect_port: int, timeout: float = 120) -> list[subprocess.Popen]:
    """Both servers, started and answering; the caller stops them."""
    bin_dir = Path(sys.executable).parent
    store = tracking_uri(DEFAULT_ROOT)
    mlflow_cmd = [str(bin_dir / "mlflow"), "server", "--backend-store-uri", store, "--host", host, "--port", str(mlflow_port)]
    if store.startswith("sqlite:"):
        mlflow_cmd += ["--default-artifact-root", (DEFAULT_ROOT / "artifacts").resolve().as_uri()]
    env = {**os.environ, "PREFECT_UI_API_URL": f"http://{host}:{prefect_port}/api"}
    procs = [
        subprocess.Popen(mlflow_cmd, start_new_session=True),
        subprocess.Popen([str(bin_dir / "prefect"), "server", "start", "--host", host, "--port", str(prefect_port)], env=env, start_new_session=True),
    ]
    try:
        wait_until_up(f"http://{host}:{mlflow_port}/health", procs[0], timeout)
        wait_until_up(f"http://{host}:{prefect_port}/api/health", procs[1], timeout)
    except BaseException:
        stop(procs)
        raise
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cvpipe.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--mlflow-port", type=int, default=5000)
    parser.add_argument("--prefect-port", type=int, default=4200)
    args = parser.parse_args(argv)
    try:
        procs = start(args.host, args.mlflow_port, args.prefect_port)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"MLflow UI:  http://{args.host}:{args.mlflow_port}", flush=True)
    print(f"Prefect UI: http://{args.host}:{args.prefect_port}", flush=True)
    print("Ctrl-C stops both.", flush=True)
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop(procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
