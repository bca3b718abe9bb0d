"""``make ui``: the MLflow UI and the Prefect UI on 127.0.0.1, with the scheduled deployments registered.

    python -m flows.ui [--host 127.0.0.1] [--mlflow-port 5000] [--prefect-port 4200] [--params params.yaml]

Both servers are waited for until they answer; the deployments of ``schedules:`` in params.yaml are
registered on the Prefect server (schedules and parameter forms in the UI; ``make serve`` runs
them), and the last results are published there as artifacts (one run of :mod:`flows.results`);
then the addresses are printed. Ctrl-C, SIGTERM or SIGHUP stops both servers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from cvpipe.mlops.ui import interrupt_on_termination, start_mlflow, start_prefect, stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--mlflow-port", type=int, default=5000)
    parser.add_argument("--prefect-port", type=int, default=4200)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="its `schedules` become deployments")
    args = parser.parse_args(argv)
    interrupt_on_termination()
    procs: list[subprocess.Popen] = []
    try:
        procs.append(start_mlflow(args.host, args.mlflow_port))
        procs.append(start_prefect(args.host, args.prefect_port))
        api = f"http://{args.host}:{args.prefect_port}/api"
        registered = subprocess.run([sys.executable, "-m", "flows.deploy", "--params", str(args.params)],
                                    env={**os.environ, "PREFECT_API_URL": api}, capture_output=True, text=True, check=False)
        print((registered.stdout + registered.stderr).strip() if registered.returncode else registered.stdout.strip(), flush=True)
        # the last results of `make run` (which has no Prefect server) as one flow run's artifacts
        published = subprocess.run([sys.executable, "-m", "flows.results", "--mlflow-ui", f"http://{args.host}:{args.mlflow_port}"],
                                   env={**os.environ, "PREFECT_API_URL": api}, capture_output=True, text=True, check=False)
        said = [line for line in (published.stdout + published.stderr).splitlines() if "published" in line or "error" in line]
        print(said[-1].split(" - ")[-1] if said else f"flows.results exited with {published.returncode}", flush=True)
        print(f"MLflow UI:  http://{args.host}:{args.mlflow_port}", flush=True)
        print(f"Prefect UI: http://{args.host}:{args.prefect_port}", flush=True)
        print("Ctrl-C stops both. The deployments read 'Not Ready' until `make serve` (another terminal) runs them,"
              " scheduled or started from the UI.", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(1)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        stop(procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
