"""dvc.yaml declares everything each stage reads: every project module its command imports (at any
depth, lazily or not, through the task registry too) must be under one of the stage's deps, so a code
change can never leave a stale cached result."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cvpipe.core.params import load_params
from cvpipe.core.pipeline import resolve, within
from cvpipe.tasks import TASKS, dataset_task
from tests.conftest import REPO

PACKAGES = ("cvpipe", "stages", "flows")


def module_file(name: str, root: Path = REPO) -> Path | None:
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(file: Path, root: Path = REPO) -> set[str]:
    """Project modules a file imports anywhere (top level, inside functions, ``from pkg import module``)."""
    found: set[str] = set()
    package = ".".join(file.relative_to(root).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(filter(None, [*parts, base]))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}", root)}
    return {m for m in found if m.split(".")[0] in PACKAGES and module_file(m, root)}


def closure(modules: set[str], root: Path = REPO) -> set[Path]:
    """The files of ``modules``, of every module they import transitively, and of their packages' __init__."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts))]  # importing a.b.c runs a and a.b
        todo += imported_modules(module_file(name, root), root)
    return {module_file(m, root) for m in seen}


def stage_modules(spec, params: dict) -> set[Path]:
    """What a stage's command imports, with the task registry resolved for its dataset."""
    files = closure({spec.module})
    dispatches = "get_task(" in module_file(spec.module).read_text(encoding="utf-8")
    if dispatches and "--dataset" in spec.args:
        target = TASKS[dataset_task(params, spec.args[spec.args.index("--dataset") + 1])]
        files |= closure({target.split(":")[0]}) if target else set()
    return files


def undeclared(spec, files: set[Path]) -> list[str]:
    rel = sorted(f.relative_to(REPO).as_posix() for f in files)
    return [f for f in rel if not any(within(f, d) for d in spec.deps)]


STAGES = [s for s in resolve(REPO) if s.module]


@pytest.mark.parametrize("spec", STAGES, ids=[s.name for s in STAGES])
def test_every_module_a_stage_imports_is_a_declared_dependency(spec):
    missing = undeclared(spec, stage_modules(spec, load_params(REPO / "params.yaml")))
    assert not missing, f"{spec.name} imports {missing}, which dvc.yaml does not list under its deps"


def test_the_closure_follows_lazy_imports_and_the_task_registry():
    train = next(s for s in STAGES if s.name == "train@fruits360")
    files = {f.relative_to(REPO).as_posix() for f in stage_modules(train, load_params(REPO / "params.yaml"))}
    assert {"stages/train.py", "cvpipe/__init__.py", "cvpipe/tasks/__init__.py", "cvpipe/classification/task.py",
            "cvpipe/classification/fit.py", "cvpipe/classification/models.py", "cvpipe/core/errors.py"} <= files
    assert not any(f.startswith(("cvpipe/detection", "flows/")) for f in files)
    # a module left out of a stage's deps is found
    from dataclasses import replace

    short = replace(train, deps=tuple(d for d in train.deps if d != "cvpipe/classification"))
    assert "cvpipe/classification/fit.py" in undeclared(short, stage_modules(short, load_params(REPO / "params.yaml")))


@pytest.mark.parametrize("spec", STAGES, ids=[s.name for s in STAGES])
def test_code_deps_name_packages_not_modules(spec):
    """dvc.yaml stays readable as the map: a stage's library deps are whole packages (``cvpipe/data``)."""
    modules = [d for d in spec.deps if d.startswith("cvpipe/") and d != "cvpipe/__init__.py"
               and not ((REPO / d).is_dir() and (REPO / d / "__init__.py").is_file())]
    assert not modules, f"{spec.name} lists library modules {modules}; name their packages instead"
