"""Prefect deployments with the schedules of params.yaml: register them, or serve them until Ctrl-C.

    python -m flows.deploy            # register on the Prefect server (PREFECT_API_URL, or one on 127.0.0.1:4200)
    python -m flows.deploy --serve    # register and run them (a server on 127.0.0.1:4200 is started if none answers)
    python -m flows.deploy --write-prefect-yaml   # the same deployments for a process work pool, as prefect.yaml

``schedules:`` in params.yaml lists each deployment: its name, the flow (``pipeline`` or ``predict``), a
cron (or none: a deployment run from the UI or ``prefect deployment run`` only) and the flow's default
parameters. The Prefect UI shows each one with its schedule and a form for its
parameters. Scheduled and UI-started runs need a process serving the deployments: ``--serve`` (``make
serve``). Stopping it pauses the schedules (Prefect's ``serve`` does so on shutdown); serving again
resumes them.

Beyond one process: ``prefect.yaml`` (written from the same ``schedules``, never by hand) declares the
deployments on the process work pool ``cvpipe``; ``prefect deploy --all`` registers them (``make
deploy-pool``) and ``prefect worker start --pool cvpipe`` on any machine with the project and its
data picks their runs up (``make worker``). The worker runs each flow in the checkout named by
``CVPIPE_PROJECT_DIR`` on that machine (prefect.yaml's pull step).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvpipe.core import cli
from cvpipe.core.errors import CvpipeError, ParamsError
from cvpipe.core.io import write_text
from cvpipe.core.params import check_keys, load_params, mapping

FLOWS = ("pipeline", "predict")
ENTRYPOINTS = {"pipeline": "flows/pipeline.py:pipeline", "predict": "flows/predict.py:predict"}
WORK_POOL = "cvpipe"
PREFECT_YAML = Path("prefect.yaml")


@dataclass(frozen=True)
class Schedule:
    name: str
    flow: str
    cron: str | None  # None: no schedule
    parameters: dict[str, Any]


def schedules(params: dict[str, Any]) -> list[Schedule]:
    """The ``schedules`` section, checked: names unique, a known flow, a valid cron, a parameters mapping."""
    from prefect.client.schemas.schedules import CronSchedule

    entries = params.get("schedules") or []
    if not isinstance(entries, list):
        raise ParamsError("schedules", "must be a list of {name, flow, cron, parameters}")
    found: list[Schedule] = []
    for k, raw in enumerate(entries):
        key = f"schedules[{k}]"
        entry = mapping(raw, key)
        check_keys(entry, ("name", "flow", "cron", "parameters"), key)
        name = entry.get("name")
        if not isinstance(name, str) or not name or name in {s.name for s in found}:
            raise ParamsError(f"{key}.name", f"must be a unique, non-empty name, not {name!r}")
        if entry.get("flow") not in FLOWS:
            raise ParamsError(f"{key}.flow", f"is {entry.get('flow')!r}; choose one of {', '.join(FLOWS)}")
        try:
            if entry.get("cron") is not None:
                CronSchedule(cron=entry.get("cron"))
        except Exception as exc:
            raise ParamsError(f"{key}.cron", f"is {entry.get('cron')!r}, not a cron expression ('0 3 * * *': daily at 03:00)") from exc
        found.append(Schedule(name, entry["flow"], entry.get("cron"), mapping(entry.get("parameters"), f"{key}.parameters")))
    return found


def deployments(params_file: Path, params: dict[str, Any]) -> list:
    """RunnerDeployments of the scheduled flows of ``params`` (read from ``params_file``, which each run reads again),
    with the parameters checked against each flow's signature."""
    from flows.pipeline import pipeline
    from flows.predict import predict

    flows = {"pipeline": pipeline, "predict": predict}
    result = []
    for s in schedules(params):
        # a flow that reads params.yaml reads the file the deployments were made from
        parameters = ({"params_file": str(params_file)} if "params_file" in flows[s.flow].parameters.properties else {}) | s.parameters
        unknown = set(parameters) - set(flows[s.flow].parameters.properties)
        if unknown:
            raise ParamsError(f"schedules.{s.name}.parameters", f"{sorted(unknown)} are not parameters of the "
                                                                  f"{s.flow} flow ({', '.join(flows[s.flow].parameters.properties)})")
        when = f"on the schedule {s.cron!r}" if s.cron else "when run from the UI or `prefect deployment run`"
        result.append(flows[s.flow].to_deployment(name=s.name, cron=s.cron, parameters=parameters, tags=["cvpipe"],
                                                  description=f"{s.flow} {when} (params.yaml: schedules)"))
    return result


def prefect_yaml(params_file: Path, params: dict[str, Any]) -> str:
    """``prefect.yaml``: the scheduled deployments on the process work pool, for ``prefect deploy --all``."""
    import yaml
    from prefect import __version__

    # deployments() checks each schedule's parameters against its flow, in the order of schedules()
    entries = [{"name": s.name, "description": d.description, "entrypoint": ENTRYPOINTS[s.flow], "tags": ["cvpipe"],
                "parameters": dict(d.parameters), "schedules": [{"cron": s.cron}] if s.cron else [], "work_pool": {"name": WORK_POOL}}
               for s, d in zip(schedules(params), deployments(params_file, params), strict=True)]
    config = {"name": "cvpipe", "prefect-version": __version__, "build": None, "push": None,
              # the worker runs the flow in its own checkout of the project (with the data DVC pulled there)
              "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $CVPIPE_PROJECT_DIR }}"}}],
              "deployments": entries}
    return (f"# Written by `python -m flows.deploy --write-prefect-yaml` from {params_file.as_posix()}'s `schedules`; do not edit.\n"
            "# `make deploy-pool` registers these deployments on the process work pool; `make worker` runs them.\n"
            + yaml.safe_dump(config, sort_keys=False))


def api_up(url: str) -> bool:
    """Whether a Prefect API answers at ``url``."""
    from cvpipe.mlops.ui import answers

    return answers(f"{url.rstrip('/')}/health")


def register(params_file: Path, params: dict[str, Any]) -> list[str]:
    """Create or update each deployment on the server; returns their names as ``flow/deployment``."""
    names = []
    for deployment in deployments(params_file, params):
        deployment.apply()
        names.append(deployment.full_name)
    return names


def serve(params_file: Path, params: dict[str, Any]) -> None:
    """Register and run the deployments in this process until interrupted."""
    from prefect import serve as prefect_serve

    prefect_serve(*deployments(params_file, params))


def with_server(argv: list[str], port: int) -> int:
    """Run ``python -m flows.deploy argv`` against a Prefect server on 127.0.0.1:``port``: one already
    there (``make ui``), or one started here and stopped afterwards. Ctrl-C, SIGTERM or SIGHUP stop both."""
    from cvpipe.mlops.ui import interrupt_on_termination, start_prefect, stop

    interrupt_on_termination()
    api = f"http://127.0.0.1:{port}/api"
    started = []
    try:
        if not api_up(api):
            print(f"starting a Prefect server on http://127.0.0.1:{port} (PREFECT_API_URL is not set)", flush=True)
            started.append(start_prefect("127.0.0.1", port))
        # its own session: Ctrl-C reaches this process only, which passes it on once
        child = subprocess.Popen([sys.executable, "-m", "flows.deploy", *argv], env={**os.environ, "PREFECT_API_URL": api},
                                 start_new_session=True)
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)  # serve pauses the schedules as it stops
            return child.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        stop(started)


def get_args_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m flows.deploy``."""
    parser = argparse.ArgumentParser(prog="python -m flows.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help="also run the deployments here until Ctrl-C (make serve)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--port", type=int, default=4200, help="local Prefect server's port when PREFECT_API_URL is not set")
    parser.add_argument("--write-prefect-yaml", action="store_true", help=f"write {PREFECT_YAML} (the work-pool deployments) and stop")
    return parser


def execute(args: argparse.Namespace) -> None:
    """Write prefect.yaml, or register (or serve) the deployments of params.yaml's ``schedules``."""
    params = load_params(args.params)
    found = deployments(args.params, params)  # a bad schedule or parameter is reported before any server starts
    if args.write_prefect_yaml:
        write_text(PREFECT_YAML, prefect_yaml(args.params, params))
        print(f"{PREFECT_YAML}: {len(found)} deployments on the work pool {WORK_POOL!r}")
        return
    if not os.environ.get("PREFECT_API_URL"):
        if not args.serve and not api_up(f"http://127.0.0.1:{args.port}/api"):
            raise CvpipeError(f"no Prefect server: PREFECT_API_URL is not set and nothing answers on 127.0.0.1:{args.port}; "
                              "start one (make ui, or make serve) or set PREFECT_API_URL")
        argv = ["--params", str(args.params)] + (["--serve"] if args.serve else [])
        code = with_server(argv, args.port)
        if code:
            raise SystemExit(code)
        return
    if args.serve:
        serve(args.params, params)
    else:
        for name in register(args.params, params):
            print(f"deployment {name} registered on {os.environ['PREFECT_API_URL']}")


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.deploy``: 0, or 1 with one error line."""
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
