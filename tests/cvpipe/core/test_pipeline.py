"""cvpipe.core.pipeline: dvc.yaml resolved by DVC's parser; order and cache keys from the declarations."""

from __future__ import annotations

import pytest

from cvpipe.core.errors import DataError
from cvpipe.core.pipeline import content_key, in_order, resolve
from tests.conftest import REPO

DVC_YAML = """
stages:
  make:
    foreach: ${items}
    do:
      cmd: python -m stages.make --n ${item.n} --out out/${key}
      deps:
        - src/${key}.txt
        - code
      params:
        - items.${key}
      outs:
        - out/${key}
  use:
    foreach: ${items}
    do:
      cmd: python -m stages.use out/${key}
      deps:
        - out/${key}
      metrics:
        - m/${key}.json:
            cache: false
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "params.yaml").write_text("items:\n  a: {n: 1}\n  b: {n: 2}\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "code").mkdir()
    for name in ("a", "b"):
        (tmp_path / "src" / f"{name}.txt").write_text(name)
    (tmp_path / "code" / "lib.py").write_text("x = 1\n")
    return tmp_path


def test_stages_are_interpolated_and_ordered_by_their_deps_and_outs(project):
    specs = resolve(project)
    make_a = next(s for s in specs if s.name == "make@a")
    assert make_a.module == "stages.make" and make_a.args == ["--n", "1", "--out", "out/a"] and make_a.item == "a"
    assert make_a.params == ("items.a",) and next(s for s in specs if s.name == "use@b").outs == ("m/b.json",)
    order = [s.name for s in in_order(list(reversed(specs)))]
    assert order.index("make@a") < order.index("use@a") and order.index("make@b") < order.index("use@b")


def test_another_params_file_is_interpolated_and_a_broken_one_is_named(project, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("items:\n  c: {n: 5}\n")
    assert [s.name for s in resolve(project, other)] == ["make@c", "use@c"]
    other.write_text("things: {}\n")
    with pytest.raises(DataError, match=r"dvc.yaml: .*Could not find 'items'.*other.yaml"):
        resolve(project, other)


def test_the_cache_key_changes_with_a_dependency_or_a_declared_param_and_nothing_else(project):
    spec = next(s for s in resolve(project) if s.name == "make@a")
    params = {"items": {"a": {"n": 1}, "b": {"n": 2}}}
    key = content_key(spec, params, project)
    assert content_key(spec, {"items": {"a": {"n": 1}, "b": {"n": 9}}}, project) == key  # another stage's param
    assert content_key(spec, {"items": {"a": {"n": 3}, "b": {"n": 2}}}, project) != key
    (project / "src/b.txt").write_text("changed")  # not a dep of make@a
    assert content_key(spec, params, project) == key
    (project / "code/lib.py").write_text("x = 2\n")  # a file inside a declared folder
    assert content_key(spec, params, project) != key


def test_the_project_pipeline_resolves_with_every_dataset_stage():
    names = {s.name for s in resolve(REPO)}
    assert {"ingest@coco", "validate@dsb2018", "convert_yolo@underground", "train@fruits360", "register@simpsons"} <= names


def test_detection_runs_through_the_same_stage_modules_after_its_conversion():
    """The pipeline flow and `dvc repro` see the detection block as they see classification's: the same
    stage modules, after convert_yolo of the same dataset, each dataset's own params section only."""
    from cvpipe.core.pipeline import in_order

    specs = {s.name: s for s in resolve(REPO)}
    order = [s.name for s in in_order(list(specs.values()))]
    for name in ("coco", "underground"):
        chain = [f"convert_yolo@{name}", f"detection_train@{name}", f"detection_evaluate@{name}", f"detection_register@{name}"]
        assert [order.index(c) for c in chain] == sorted(order.index(c) for c in chain)
        assert [specs[c].module for c in chain[1:]] == ["stages.train", "stages.evaluate", "stages.register"]
        assert f"detection.datasets.{name}" in specs[f"detection_train@{name}"].params
    assert not any(n.startswith(("train@", "detection_train@")) and n.split("@")[1] == "dsb2018" for n in specs)
