"""The task seam: train, evaluate and register name no task; they dispatch through cvpipe.tasks."""

from __future__ import annotations

import ast

import pytest

from cvpipe.tasks import TASKS, get_task, has_trainer
from tests.conftest import REPO


def code_strings_and_imports(path) -> tuple[set[str], set[str]]:
    """String constants that are not docstrings, and imported module names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings}
    imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imports |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return strings, imports


@pytest.mark.parametrize("stage", ["train", "evaluate", "register"])
def test_the_training_stages_name_no_task(stage):
    strings, imports = code_strings_and_imports(REPO / "stages" / f"{stage}.py")
    assert not [s for s in strings if any(task in s.lower() for task in TASKS)], strings
    assert not [m for m in imports if m.split(".")[1:2] and m.split(".")[1] in TASKS], imports
    assert "cvpipe.tasks" in imports


def test_the_registry_builds_each_task_with_a_trainer_and_names_the_others():
    for name in TASKS:
        if has_trainer(name):
            task = get_task(name)
            assert task.name == name and task.primary_metric and task.per_group_metric and task.model_kind
            for method in ("train", "evaluate", "log_model", "score"):
                assert callable(getattr(task, method))
