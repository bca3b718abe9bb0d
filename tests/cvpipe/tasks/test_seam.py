"""The task seam: values, not files or globals, cross it. Training configs read back from train.json through
the task's own config class, the compute settings read once from params.yaml, evaluation settings checked."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from cvpipe.core.errors import DataError, ParamsError
from cvpipe.tasks import TASKS, Compute, evaluate_settings, get_task, read_trained, trained_config

SECTIONS = {  # a non-default value of each task's training section
    "classification": {"epochs": 3, "val_fraction": 0.3, "augment": {"rotation": 5}},
    "detection": {"epochs": 2, "imgsz": 64, "augment": {"mosaic": 0.0}},
    "segmentation": {"epochs": 2, "input_size": 48, "holdout_fraction": 0.25, "augment": {"flips": False}},
}


def record_of(config) -> dict:
    return config.record() if hasattr(config, "record") else asdict(config)


@pytest.mark.parametrize("name", list(TASKS))
def test_train_json_reads_back_as_the_config_that_wrote_it(name, tmp_path):
    task = get_task(name)
    config = task.train_config(SECTIONS[name])
    (tmp_path / "train.json").write_text(json.dumps({"model": "m", "params": record_of(config)}))
    assert trained_config(task, tmp_path) == config  # the same frozen config, so train.json's "params" bytes too
    assert not hasattr(task, "data_root")  # where a task reads its data is on the stage's command line only


@pytest.mark.parametrize("name", list(TASKS))
def test_a_key_the_config_class_rejects_names_train_json(name, tmp_path):
    (tmp_path / "train.json").write_text(json.dumps({"params": {"epocs": 3}}))
    with pytest.raises(ParamsError) as caught:
        trained_config(get_task(name), tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / 'train.json'}: params.epocs: unknown key")


def test_a_missing_or_malformed_train_json_is_named(tmp_path):
    with pytest.raises(DataError, match=r"train\.json: not found"):
        read_trained(tmp_path)
    (tmp_path / "train.json").write_text("{")
    with pytest.raises(DataError, match=r"train\.json: malformed JSON"):
        read_trained(tmp_path)
    (tmp_path / "train.json").write_text("[]")
    with pytest.raises(DataError, match='no "params" mapping'):
        read_trained(tmp_path)


def test_compute_is_the_train_section_read_once():
    assert Compute.from_params({"train": {"device": "cpu", "cpu_threads": 3, "cache_dir": "c"}}) == Compute("cpu", 3, Path("c"))
    assert Compute.from_params({}) == Compute("auto", 2, None)
    with pytest.raises(ParamsError, match=r"train\.cpu_threads: must be an integer >= 1"):
        Compute.from_params({"train": {"cpu_threads": 0}})


def test_evaluate_settings_are_typed_and_a_bad_key_is_named_in_its_section():
    detection = evaluate_settings({"detection": {"evaluate": {"conf": 0.5}}}, "detection")
    assert detection.conf == 0.5 and evaluate_settings({}, "detection") == evaluate_settings({"detection": {}}, "detection")
    assert evaluate_settings({"segmentation": {"evaluate": {"gallery": 2}}}, "segmentation").gallery == 2
    assert evaluate_settings({}, "classification") is None
    with pytest.raises(ParamsError, match=r"^params\.yaml: classification\.evaluate\.conf: unknown key"):
        evaluate_settings({"classification": {"evaluate": {"conf": 0.5}}}, "classification")
    with pytest.raises(ParamsError, match=r"^params\.yaml: detection\.evaluate\.cnf: unknown key"):
        evaluate_settings({"detection": {"evaluate": {"cnf": 0.5}}}, "detection")
