"""The pipeline as ``dvc.yaml`` declares it, resolved by DVC's own parser (``foreach``, ``${...}``).

``dvc.yaml`` is the one map of the pipeline: every stage's command, what it reads (``deps``,
``params``) and what it writes (``outs``, ``metrics``, ``plots``). The Prefect flow takes its
stages, their order and its cache keys from here, and a test checks that each stage's declared
dependencies cover every project module and data folder its command reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from cvpipe.core.errors import DataError
from cvpipe.core.params import load_params, lookup


@dataclass(frozen=True)
class StageSpec:
    """One stage of dvc.yaml after interpolation (``train@fruits360``)."""

    name: str
    group: str  # the dvc.yaml entry it comes from (``train``)
    item: str | None  # its foreach key (``fruits360``), None for a plain stage
    cmd: str
    deps: tuple[str, ...]
    params: tuple[str, ...]  # dotted keys of params.yaml (``classification.datasets.fruits360``)
    outs: tuple[str, ...]  # outs, metrics and plots

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.cmd)

    @property
    def module(self) -> str | None:
        """The module of a ``python -m <module> ...`` command."""
        argv = self.argv
        return argv[2] if len(argv) > 2 and argv[0].startswith("python") and argv[1] == "-m" else None

    @property
    def args(self) -> list[str]:
        """The command's arguments after ``python -m <module>``."""
        return self.argv[3:]


def resolve(root: Path = Path("."), params_file: Path | None = None) -> list[StageSpec]:
    """Every stage of ``root/dvc.yaml``, interpolated with ``params_file`` (default ``root/params.yaml``)."""
    from dvc.exceptions import DvcException
    from dvc.fs import LocalFileSystem
    from dvc.parsing import DataResolver

    dvc_yaml = root / "dvc.yaml"
    try:
        data = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(dvc_yaml, f"cannot read the pipeline: {exc}") from exc
    params_file = Path(params_file) if params_file is not None else root / "params.yaml"
    if not params_file.is_file():
        raise DataError(params_file, "parameters file not found")
    params = load_params(params_file)  # an overlay (``extends:``) merged over its base
    with tempfile.TemporaryDirectory(prefix="cvpipe-dvc-") as tmp:
        # DVC interpolates from the params.yaml beside dvc.yaml; give it the chosen parameters under that name
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        repo = SimpleNamespace(fs=LocalFileSystem(), config={})
        try:
            stages = DataResolver(repo, os.path.abspath(tmp), data).resolve()["stages"]
        except DvcException as exc:  # name the real files, not the temporary copy DVC was given
            message = str(exc).replace(os.path.relpath(Path(tmp) / "dvc.yaml"), "dvc.yaml")
            raise DataError(dvc_yaml, f"{message} (with {params_file})") from exc
    return [_spec(name, entry) for name, entry in stages.items()]


def _paths(entries: list[Any] | None) -> tuple[str, ...]:
    """``deps``/``outs`` entries are paths or ``{path: options}``."""
    out = []
    for entry in entries or []:
        out.extend(entry if isinstance(entry, dict) else [entry])
    return tuple(str(p) for p in out)


def _spec(name: str, entry: dict) -> StageSpec:
    group, _, item = name.partition("@")
    params = []
    for p in entry.get("params") or []:
        if isinstance(p, dict):  # {other_file.yaml: [keys]}
            for keys in p.values():
                params.extend(keys or [])
        else:
            params.append(p)
    outs = _paths(entry.get("outs")) + _paths(entry.get("metrics")) + _paths(entry.get("plots"))
    return StageSpec(name, group, item or None, entry["cmd"], _paths(entry.get("deps")), tuple(params), outs)


def within(path: str, folder: str) -> bool:
    """Is ``path`` the folder itself or inside it (both relative, POSIX)?"""
    path, folder = path.rstrip("/"), folder.rstrip("/")
    return path == folder or path.startswith(folder + "/")


def upstream(specs: list[StageSpec]) -> dict[str, set[str]]:
    """For each stage, the stages whose outputs it depends on (DVC's graph, from deps and outs)."""
    return {s.name: {o.name for o in specs if o is not s and any(within(d, out) or within(out, d) for d in s.deps for out in o.outs)}
            for s in specs}


def in_order(specs: list[StageSpec]) -> list[StageSpec]:
    """Stages in an order where every stage comes after those it depends on (stable otherwise)."""
    before, done, ordered = upstream(specs), set(), []
    pending = list(specs)
    while pending:
        ready = [s for s in pending if before[s.name] <= done]
        if not ready:
            raise DataError("dvc.yaml", f"the stages {[s.name for s in pending]} depend on each other in a cycle")
        for s in ready:
            ordered.append(s)
            done.add(s.name)
        pending = [s for s in pending if s.name not in done]
    return ordered


def content_key(spec: StageSpec, params: dict[str, Any], root: Path = Path("."), extra: Any = None) -> str:
    """A digest of what ``spec`` reads, as dvc.yaml declares it: every dependency's bytes (folders file by
    file, by relative name), the declared params' values, and the command. Same inputs, same key."""
    h = hashlib.sha256(spec.cmd.encode())
    for dep in sorted(spec.deps):
        path = root / dep
        files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts) if path.is_dir() else [path]
        for f in files:
            h.update(f.relative_to(root).as_posix().encode())
            h.update(hashlib.sha256(f.read_bytes()).digest() if f.is_file() else b"missing")
    values = {key: lookup(params, key, None) for key in spec.params}
    h.update(json.dumps([values, extra], sort_keys=True, default=str).encode())
    return h.hexdigest()
