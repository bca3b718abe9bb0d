"""Prefect flow: the whole pipeline for every dataset in params.yaml, stage by stage as dvc.yaml declares it.

    python -m flows.pipeline [--dataset NAME ...] [--stage GROUP ...] [--params params.yaml] [--dask local|ADDRESS]

The flow adds orchestration only. Its stages, their commands, their order and what each one reads
come from ``dvc.yaml`` (resolved by DVC's own parser, :mod:`cvpipe.core.pipeline`); each stage runs the
same ``execute`` as ``python -m stages.<name>``, or, for a stage whose bytes depend on process-global
state (``OWN_PROCESS``: train, evaluate, register), that very command in a child process, as ``dvc repro``
runs it. Per dataset: the sample is generated if its raw folder is missing, then ingest, the data gate,
conversion where the task needs it, and train, evaluate and register where the task has a trainer.
Independent datasets run concurrently: on threads of this process, or with ``--dask`` on a Dask cluster
(prefect-dask's task runner): a local cluster of worker processes (``local``) or the scheduler at an address (``tcp://host:8786``), whose
workers have the project and its data at the same path. The ``dask`` parameter does the same for a
deployment's runs (``schedules:`` in params.yaml): the flow runs itself as a child run on Dask.

Caching on content: a stage's cache key is a digest of its declared deps (files, folders), the
values of its declared params and its command, so a rerun with nothing changed completes from the
cache (state ``Cached``); a stage whose outputs have gone missing runs again. Expected failures
(bad data, bad params) fail their stage at once with one line; anything else is retried. At the end,
each dataset's gate, metrics, pictures and registry decision are published as Prefect artifacts
(:mod:`flows.results`), whether its stages ran, came from the cache or failed.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner

from cvpipe.core import cli
from cvpipe.core.errors import CvpipeError, ParamsError, UsageError
from cvpipe.core.params import load_params, mapping
from cvpipe.core.pipeline import StageSpec, content_key, in_order, resolve, upstream
from cvpipe.tasks import dataset_spec, has_trainer
from stages import samples

ROOT = Path(__file__).resolve().parents[1]
# Stages whose bytes depend on process-global state (Python's and torch's global RNGs, torch's threads, ultralytics'
# OMP_NUM_THREADS and determinism switches): each runs as dvc.yaml's command in a child process of its own, so the flow
# trains, evaluates and registers exactly what `dvc repro` does, and nothing of it leaks into the flow's process.
OWN_PROCESS = ("stages.train", "stages.evaluate", "stages.register")
_CHILDREN: set[subprocess.Popen] = set()  # the children running now, stopped if the flow is interrupted


def stage_key(context, parameters: dict) -> str:
    """What the stage reads, as dvc.yaml declares it; where MLflow writes counts too (register's side effects)."""
    spec, params = parameters["spec"], parameters["params"]
    return f"{spec.name}-" + content_key(spec, params, ROOT, os.environ.get("MLFLOW_TRACKING_URI"))


def _plain(value: Any) -> Any:
    return asdict(value) if is_dataclass(value) else value


@task(name="stage", task_run_name="{spec.name}", cache_key_fn=stage_key, persist_result=True, retries=1, retry_delay_seconds=5)
def run_stage(spec: StageSpec, params_file: Path, params: dict) -> Any:
    """One dvc.yaml stage: in a child process for ``OWN_PROCESS`` (:func:`run_child`), else in this process with the
    module's own argument parser and ``execute``; ``params`` (read from ``params_file`` once per flow run) goes to a stage
    whose ``execute`` takes it, the others read ``--params``."""
    if spec.module in OWN_PROCESS:
        return run_child(spec, params_file, get_run_logger().info)
    return run_here(spec, params_file, params)


def run_here(spec: StageSpec, params_file: Path, params: dict) -> Any:
    """The stage in this process: its result, or a failed state of one line for bad data or params."""
    module = importlib.import_module(spec.module)
    args = cli.parse(module.get_args_parser(), list(spec.args), params_file)
    try:
        if "params" in inspect.signature(module.execute).parameters:
            return _plain(module.execute(args, params))
        return _plain(module.execute(args))
    except CvpipeError as exc:  # bad data or params: one line, no retry (the same again would fail the same way)
        return Failed(message=f"{spec.name}: {cli.located(exc, args)}")


def command(spec: StageSpec, params_file: Path) -> list[str]:
    """The stage's command line as dvc.yaml writes it, with this interpreter (``--params`` only for another file)."""
    extra = [] if "--params" in spec.args or Path(params_file) == Path("params.yaml") else ["--params", str(params_file)]
    return [sys.executable, "-m", spec.module, *spec.args, *extra]


def child_env() -> dict[str, str]:
    """This process's environment, as `dvc repro` would hand it on; on a Dask worker without what Dask's nanny set
    for its workers (``distributed.nanny.pre-spawn-environ``: one OpenMP/BLAS thread and the like)."""
    env = dict(os.environ)
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):  # not on a Dask worker
        return env
    import dask

    for key, value in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items():
        if env.get(key) == str(value):
            env.pop(key)
    return env


def run_child(spec: StageSpec, params_file: Path, log: Callable[[str], None], root: Path = ROOT) -> Any:
    """Run the stage's command in a child process in ``root``; each line of its output goes to ``log``. Exit 0: the JSON
    report it declares (its metrics), if any; ``error: ...`` and exit 1: the one-line failure of the in-process call (no
    retry); anything else raises (retried). An interruption (KeyboardInterrupt, cancellation) stops the child."""
    tail: deque[str] = deque(maxlen=400)
    proc = subprocess.Popen(command(spec, params_file), cwd=root, env=child_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    _CHILDREN.add(proc)
    try:
        for line in proc.stdout:
            tail.append(line.rstrip("\n"))
            log(tail[-1])
        code = proc.wait()
    finally:
        stop(proc)
    said = [i for i, line in enumerate(tail) if line.startswith("error: ")]
    if code == 1 and said and not any(line.startswith("Traceback") for line in list(tail)[said[-1]:]):
        return Failed(message=f"{spec.name}: " + "\n".join(list(tail)[said[-1]:])[len("error: "):])
    if code != 0:
        raise RuntimeError(f"{spec.name}: `{spec.cmd}` exited with {code}")
    reports = [root / out for out in spec.outs if out.endswith(".json") and (root / out).is_file()]
    return json.loads(reports[0].read_text(encoding="utf-8")) if len(reports) == 1 else None


def stop(proc: subprocess.Popen) -> None:
    """End a child that still runs (SIGTERM, then SIGKILL after 30 s) and reap it."""
    _CHILDREN.discard(proc)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@task(name="sample", task_run_name="sample@{name}", retries=1, cache_policy=NO_CACHE)
def sample_task(name: str, source: str, raw: Path, seed: int, path: str | None = None) -> list[str]:
    """The dataset's embedded sample, generated if its raw folder is missing; or, with a ``path``, a link to it."""
    return samples.run({name: source}, raw, seed, links={name: Path(path)} if path else None)


@flow(name="pipeline", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=4))
def pipeline(
    datasets: list[str] | None = None,
    stages: list[str] | None = None,
    params_file: Path = Path("params.yaml"),
    refresh: bool = False,
    dask: str | None = None,
    dask_workers: int = 2,
) -> State:
    """Every dataset (or those named) through the stages of dvc.yaml, as `dvc repro` runs them.

    Args:
        datasets: datasets of params.yaml to run (empty: all of them)
        stages: stage groups of dvc.yaml to run, e.g. ["ingest", "validate"] for the data gate alone (empty: all)
        params_file: the parameters file, relative to the repository root
        refresh: run every stage even if its cached result is valid
        dask: run the stages on a Dask cluster: "local" (dask_workers processes here) or a scheduler's
            address (tcp://host:8786); empty: on threads of this process
        dask_workers: worker processes of the local Dask cluster
    """
    try:
        if dask:  # the same flow as a child run with prefect-dask's task runner (a flow's runner is fixed when it starts)
            runner = dask_runner(dask, dask_workers)
            return pipeline.with_options(task_runner=runner)(datasets, stages, params_file, refresh, return_state=True)
        return _run(datasets, stages, Path(params_file), refresh)
    except CvpipeError as exc:  # a bad dataset name or params file: one line, not a traceback
        return Failed(message=str(exc))


def plan(datasets: list[str] | None, stages: list[str] | None, params_file: Path) -> tuple[dict, list[StageSpec], list[str]]:
    """(params, every stage of dvc.yaml, the datasets to run), checked before anything runs."""
    if Path.cwd().resolve() != ROOT:  # dvc.yaml's paths are relative to the repository root, as for `dvc repro`
        raise UsageError(f"run the pipeline flow from the repository root, {ROOT} (not {Path.cwd()})")
    params = load_params(params_file)
    listed = list(mapping(params.get("datasets"), "datasets"))
    for name in [*listed, *(datasets or [])]:
        dataset_spec(params, name)
    names = datasets or listed
    for name in names:  # a real dataset's folder (datasets.<name>.path) is looked for before anything starts
        if (path := dataset_spec(params, name).get("path")) and not Path(path).is_dir():
            raise ParamsError(f"datasets.{name}.path", f"{path} is not a folder here", params_file)
    specs = resolve(ROOT, params_file)
    groups = {s.group for s in specs}
    for group in stages or []:
        if group not in groups:
            raise UsageError(f"no stage group {group!r} in dvc.yaml; groups: {', '.join(sorted(groups))}")
    return params, specs, names


def _run(datasets: list[str] | None, stages: list[str] | None, params_file: Path, refresh: bool) -> State:
    params, specs, names = plan(datasets, stages, params_file)
    chosen = [s for s in in_order(specs) if s.item in names and (not stages or s.group in stages)]
    before = upstream(specs)
    futures: dict[str, Any] = {}
    seed = params.get("samples", {}).get("seed", 0)
    for name in names:
        spec = dataset_spec(params, name)
        futures[f"sample@{name}"] = sample_task.submit(name, spec["source"], ROOT / "data/raw", seed, spec.get("path"))
        own = [s for s in chosen if s.item == name]
        if not any(s.module == "stages.train" for s in specs if s.item == name):
            why = "has no trainer yet" if not has_trainer(spec["task"]) else "has no train stage in dvc.yaml"
            print(f"{name}: the {spec['task']} task {why}; this dataset stops after "
                  f"{own[-1].group if own else 'sampling'}")
        for s in own:
            missing = any(not (ROOT / out).exists() for out in s.outs)
            waits = [futures[u] for u in before[s.name] if u in futures] or [futures[f"sample@{name}"]]
            futures[s.name] = run_stage.with_options(refresh_cache=refresh or missing).submit(s, params_file, params,
                                                                                              wait_for=waits)
    try:
        for future in futures.values():
            future.wait()
    except BaseException:  # Ctrl-C or a cancelled run: the children of running stages stop too
        for proc in list(_CHILDREN):
            stop(proc)
        raise
    from flows.results import default_mlflow_ui, publish_all  # the run's results as artifacts, failed gates included

    publish_all(ROOT, default_mlflow_ui(), names)
    return summary(futures, names)


def summary(futures: dict[str, Any], names: list[str]) -> State:
    """The flow's final state from its stages' states: the results, or which stages failed, each in its own words."""
    results: dict[str, dict] = {}
    failed, details, skipped = [], [], []
    for key, future in futures.items():
        state = future.state
        stage, _, name = key.partition("@")
        if state.is_completed():
            results.setdefault(name, {})[stage] = future.result()
        elif state.is_failed() and state.message and state.message.startswith(f"{key}: "):
            failed.append(key)
            details.append(state.message)  # an expected failure, said by the stage itself
        elif state.is_failed() or state.is_crashed():
            failed.append(key)
            details.append(f"{key}: {state.message or state.name}")
        else:
            skipped.append(key)  # an upstream stage failed
    for name, done in results.items():
        for r in (r for stage, r in done.items() if stage.endswith("register") and r):  # the register report
            print(f"{name}: {r['model_name']} v{r['version']} -> @{r['alias']} ({r['reason']})")
    if failed:
        line = f"{', '.join(failed)} failed" + (f"; not run: {', '.join(skipped)}" if skipped else "")
        return Failed(message="\n".join([line, *details]))
    return Completed(data=results, message=f"{len(futures)} stages for {', '.join(names)}")


def dask_runner(address: str, workers: int = 2):
    """prefect-dask's task runner: a local cluster of ``workers`` processes on 127.0.0.1 (``local``), or the
    Dask scheduler at ``address``. Each stage then runs in a Dask worker, in its own process."""
    from prefect_dask import DaskTaskRunner

    if address == "local":
        if workers < 1:
            raise UsageError(f"dask_workers is {workers}; a local Dask cluster needs at least 1 worker process")
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                              "host": "127.0.0.1", "dashboard_address": None})
    if "://" not in address:
        raise UsageError(f"--dask {address!r}: 'local' or a scheduler address such as tcp://10.0.0.5:8786")
    return DaskTaskRunner(address=address)


def get_args_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m flows.pipeline``."""
    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", help="only this dataset (repeatable); default: all in params.yaml")
    parser.add_argument("--stage", action="append", help="only this stage group of dvc.yaml (repeatable), e.g. ingest")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--refresh", action="store_true", help="run every stage even if its cache entry is valid")
    parser.add_argument("--dask", metavar="local|ADDRESS", help="run the stages on a Dask cluster: a local one, or a scheduler's address")
    parser.add_argument("--dask-workers", type=cli.positive_int, default=2, help="worker processes of the local Dask cluster")
    return parser


def execute(args: argparse.Namespace) -> dict:
    """Check the plan, then run the flow; its results by dataset and stage (a failed run is one error)."""
    plan(args.dataset, args.stage, args.params)  # bad input is one line, before a Prefect server starts
    if args.dask:
        dask_runner(args.dask, args.dask_workers)  # a bad address is one line, before a Prefect server starts
    state = pipeline(datasets=args.dataset, stages=args.stage, params_file=args.params, refresh=args.refresh, dask=args.dask,
                     dask_workers=args.dask_workers, return_state=True)
    if not state.is_completed():
        raise CvpipeError(state.message or "the pipeline failed")
    return state.result()


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.pipeline``: 0, or 1 with the failure."""
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
