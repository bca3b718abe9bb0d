"""cvpipe.core.params: an overlay file (``extends:``) over params.yaml."""

from __future__ import annotations

import pytest

from cvpipe.core.errors import CvpipeError, ParamsError
from cvpipe.core.params import load_params
from cvpipe.core.pipeline import resolve
from tests.cvpipe.core.test_pipeline import project  # noqa: F401 - fixture

BASE = """
items:
  a: {n: 1}
  b: {n: 2}
train:
  epochs: 10
  device: auto
  sizes: [1, 2]
  datasets:
    a: {lr: 0.1}
"""


def test_an_overlay_runs_its_own_datasets_and_merges_every_other_section(tmp_path):
    (tmp_path / "params.yaml").write_text(BASE.replace("items:", "datasets:"))
    over = tmp_path / "params.extra.yaml"
    over.write_text("extends: params.yaml\ndatasets:\n  c: {n: 3}\ntrain:\n  epochs: 2\n  sizes: [5]\n  datasets:\n    c: {lr: 1}\n")
    params = load_params(over)
    assert params["datasets"] == {"c": {"n": 3}}  # what runs is the overlay's list alone
    assert params["train"] == {"epochs": 2, "device": "auto", "sizes": [5], "datasets": {"a": {"lr": 0.1}, "c": {"lr": 1}}}
    assert "extends" not in params and load_params(tmp_path / "params.yaml")["train"]["epochs"] == 10


def test_dvc_yaml_is_interpolated_with_the_merged_parameters(project):  # noqa: F811
    (project / "over.yaml").write_text("extends: params.yaml\nitems:\n  b: {n: 7}\n")  # items merge: a stays, b changes
    specs = {s.name: s for s in resolve(project, project / "over.yaml")}
    assert sorted(specs) == ["make@a", "make@b", "use@a", "use@b"]
    assert specs["make@a"].args[:2] == ["--n", "1"] and specs["make@b"].args[:2] == ["--n", "7"]


@pytest.mark.parametrize(("text", "message"), [
    ("extends: missing.yaml\n", r"missing\.yaml: parameters file not found"),
    ("extends: [params.yaml]\n", r"over\.yaml: extends: expected the name of the parameters file"),
    ("extends: over.yaml\n", r"over\.yaml: extends: over\.yaml extends this file again \(a cycle\)"),
])
def test_a_bad_overlay_is_one_line_naming_the_file(tmp_path, text, message):
    (tmp_path / "params.yaml").write_text(BASE)
    (tmp_path / "over.yaml").write_text(text)
    with pytest.raises(CvpipeError, match=message):
        load_params(tmp_path / "over.yaml")


def test_number_sections_take_defaults_null_where_the_default_is_and_name_a_bad_key_or_value():
    from cvpipe.core.params import LabelSettings, RegistrySettings, label_settings, registry_settings

    assert registry_settings({}) == RegistrySettings() and label_settings({"labels": None}) == LabelSettings()
    got = label_settings({"labels": {"folds": 5, "epochs": None}})
    assert got == LabelSettings(folds=5, epochs=None) and isinstance(got.folds, int)
    got = registry_settings({"registry": {"min_delta": 0, "resamples": 200}})
    assert isinstance(got.min_delta, float) and got.resamples == 200 and isinstance(got.resamples, int)
    with pytest.raises(ParamsError, match=r"registry\.seed: must be an integer, not 1\.5"):
        registry_settings({"registry": {"seed": 1.5}})
    with pytest.raises(ParamsError, match=r"registry\.resamples: must be an integer, not None"):
        registry_settings({"registry": {"resamples": None}})  # null only where the default is null
    with pytest.raises(ParamsError, match=r"registry.*confidence_level"):
        registry_settings({"registry": {"confidence_level": 0.9}})
