"""The library's folders are its architecture: packages by concern, in layers, each importing only
the layers below it (and never ``stages`` or ``flows``), and no import cycle between modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_dependencies import imported_modules

# lowest first; a package may import its own modules and those of lower layers only
LAYERS: list[tuple[str, ...]] = [
    ("core",),  # errors, atomic I/O, command lines, params.yaml, plots, the dvc.yaml map
    ("data",),  # manifests, class maps, decoding, image facts, RLE, splits, parallel work, model input
    ("sources",),  # one module per native layout: reader, sample, the gate checks it adds, its converters
    ("convert", "gate"),  # YOLO / TFRecord / DSB converters; the data gate
    ("tasks",),  # the task seam, its registry and the shared training loop
    ("classification", "detection", "segmentation"),  # one package per task, none importing another
    ("mlops",),  # MLflow registry, serving, the shared tracking server, the UIs
    ("report",),  # what a person reads at the end: the run's summary
]
LAYER = {pkg: i for i, group in enumerate(LAYERS) for pkg in group}


def package_of(module: str) -> str | None:
    """``cvpipe.data.manifest`` -> ``data``; ``cvpipe`` itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "cvpipe" else None


def library_modules(root: Path = REPO) -> dict[str, Path]:
    files = sorted((root / "cvpipe").rglob("*.py"))
    return {".".join(f.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): f for f in files}


def violations(root: Path = REPO) -> list[str]:
    """Every import of a higher layer, a sibling package of the same layer, or stages/flows."""
    found = []
    for name, file in library_modules(root).items():
        own = package_of(name)
        for target in sorted(imported_modules(file, root)):
            if target.split(".")[0] in ("stages", "flows"):
                found.append(f"{name} imports {target}: the library never imports stages or flows")
                continue
            other = package_of(target)
            if other is None or other == own:
                continue
            if own is None:
                found.append(f"{name} imports {target}: cvpipe/__init__.py imports nothing")
            elif LAYER[other] >= LAYER[own]:
                found.append(f"{name} ({own}, layer {LAYER[own]}) imports {target} ({other}, layer {LAYER[other]})")
    return found


def cycles(root: Path = REPO) -> list[list[str]]:
    """Strongly connected groups of more than one module in the library's import graph (Tarjan)."""
    graph = {name: {t for t in imported_modules(file, root) if t.startswith("cvpipe")} for name, file in library_modules(root).items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_every_library_module_lives_in_a_layered_package():
    loose = [n for n in library_modules() if n != "cvpipe" and package_of(n) not in LAYER]
    assert not loose, f"modules outside the packages of LAYERS: {loose}"


def test_no_package_imports_a_higher_layer_or_a_sibling():
    assert violations() == []


def test_no_import_cycles():
    assert cycles() == []


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize(("files", "expected"), [
    ({"cvpipe/core/params.py": "from cvpipe.tasks import TASKS\n", "cvpipe/tasks/__init__.py": ""},
     "cvpipe.core.params (core, layer 0) imports cvpipe.tasks (tasks, layer 4)"),
    ({"cvpipe/detection/fit.py": "def f():\n    from cvpipe.segmentation import models\n",
      "cvpipe/segmentation/__init__.py": "", "cvpipe/segmentation/models.py": ""},
     "cvpipe.detection.fit (detection, layer 5) imports cvpipe.segmentation.models (segmentation, layer 5)"),
    ({"cvpipe/data/manifest.py": "import stages.ingest\n", "stages/__init__.py": "", "stages/ingest.py": ""},
     "cvpipe.data.manifest imports stages.ingest: the library never imports stages or flows"),
])
def test_the_checks_find_a_planted_violation(tmp_path, files, expected):
    _write(tmp_path, {"cvpipe/__init__.py": "", **{f"cvpipe/{p}/__init__.py": "" for p in LAYER}, **files})
    assert expected in violations(tmp_path)


def test_the_checks_find_a_planted_cycle(tmp_path):
    _write(tmp_path, {"cvpipe/__init__.py": "", "cvpipe/data/__init__.py": "",
                      "cvpipe/data/a.py": "from cvpipe.data import b\n", "cvpipe/data/b.py": "from cvpipe.data.a import x\n"})
    assert cycles(tmp_path) == [["cvpipe.data.a", "cvpipe.data.b"]]
