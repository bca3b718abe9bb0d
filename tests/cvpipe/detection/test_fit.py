"""Detection training inputs: parameters, the converted folder's checks, the training mirror."""

from __future__ import annotations

import pytest
import yaml

from cvpipe.core.errors import DataError, ParamsError
from cvpipe.detection.fit import DetectionConfig, YoloSet, history_rows, training_mirror
from cvpipe.sources.samples import generate
from cvpipe.tasks import Compute
from stages import convert


@pytest.fixture(scope="module")
def yolo(tmp_path_factory):
    base = tmp_path_factory.mktemp("det")
    root = generate("voc", base / "raw")
    convert.run("voc-yolo", base / "yolo", root / "annotations", root / "images", val_fraction=0.2)
    return base / "yolo"


@pytest.mark.parametrize(("section", "key"), [
    ({"epochs": 0}, "epochs"),
    ({"imgsz": 100}, "imgsz"),
    ({"optimizer": "adam"}, "optimizer"),
    ({"model": "yolov8n"}, "model"),
    ({"model": "weights/yolov8n.pt"}, "model"),  # not a local file: never downloaded
    ({"augment": {"flip": 0.5}}, "augment.flip"),
    ({"augment": {"mosaic": "yes"}}, "augment.mosaic"),
    ({"val_fraction": 0}, "val_fraction"),
    ({"epoch": 3}, "epoch"),
])
def test_a_bad_parameter_is_named(section, key):
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        DetectionConfig.from_params(section)


def test_the_mirror_splits_train_for_validation_and_leaves_the_converted_folder_alone(yolo, tmp_path):
    before = sorted(p.relative_to(yolo) for p in yolo.rglob("*"))
    data = YoloSet.read(yolo)
    counts = training_mirror(data, tmp_path / "mirror", 0.2)
    assert counts["train"] + counts["val"] == len(data.images["train"]) and 0 < counts["val"] < counts["train"]
    doc = yaml.safe_load((tmp_path / "mirror" / "data.yaml").read_text())
    assert doc["names"] == dict(enumerate(data.classes.names)) and doc["path"] == str((tmp_path / "mirror").resolve())
    held_out = {p.name for p in data.images["val"]}
    mirrored = {p.name for p in (tmp_path / "mirror" / "images").rglob("*.*")}
    assert not held_out & mirrored  # the converter's val split is never trained or validated on
    assert sorted(p.relative_to(yolo) for p in yolo.rglob("*")) == before
    assert data.held_out("test") == "val"


def test_a_class_map_that_disagrees_with_data_yaml_is_a_clear_error(yolo, tmp_path):
    import shutil

    copy = tmp_path / "yolo"
    shutil.copytree(yolo, copy, symlinks=True)
    doc = yaml.safe_load((copy / "data.yaml").read_text())
    doc["names"][0] = "renamed"
    (copy / "data.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(DataError, match=r"data\.yaml: names .* disagree with classes\.json"):
        YoloSet.read(copy)


def test_a_dataset_without_a_single_box_is_a_clear_error(yolo, tmp_path):
    import shutil

    copy = tmp_path / "yolo"
    shutil.copytree(yolo, copy, symlinks=True)
    for label in (copy / "labels" / "train").glob("*.txt"):
        label.write_text("")
    with pytest.raises(DataError, match=r"labels/train: not a single box in the training split"):
        training_mirror(YoloSet.read(copy), tmp_path / "mirror", 0.2)


def test_history_drops_the_wall_clock_and_uses_names_mlflow_accepts(tmp_path):
    (tmp_path / "results.csv").write_text("epoch,time,train/box_loss,metrics/mAP50(B),metrics/mAP50-95(B)\n1,3.5,2.0,0.5,0.25\n")
    assert history_rows(tmp_path / "results.csv") == [{"epoch": 1, "train/box_loss": 2.0, "val/mAP50": 0.5, "val/mAP50-95": 0.25}]


def test_a_model_yaml_ultralytics_does_not_ship_is_named_before_training(yolo, tmp_path):
    from cvpipe.detection.task import DetectionTask

    with pytest.raises(ParamsError, match=r"model: 'yolov99n\.yaml' is neither a model YAML ultralytics ships nor a local file"):
        task = DetectionTask()
        config = task.train_config({"model": "yolov99n.yaml", "epochs": 1})
        task.train(yolo, tmp_path / "out", config, Compute("cpu", 2, tmp_path / "cache"))
    assert not (tmp_path / "out").exists()


def test_training_gets_its_cpu_threads_as_an_argument_not_from_torch(yolo, tmp_path, monkeypatch):
    """``train.cpu_threads`` reaches ultralytics' training as the value the stage read, whatever torch was set to."""
    import torch

    from cvpipe.detection import fit
    from cvpipe.detection.task import DetectionTask

    given = {}

    def fake_fit(config, data_yaml, run_dir, device, threads, stop_after=None):
        given["threads"] = threads
        torch.set_num_threads(1)  # as ultralytics' select_device may
        raise KeyboardInterrupt

    monkeypatch.setattr(fit, "fit", fake_fit)
    before = torch.get_num_threads()
    try:
        task = DetectionTask()
        with pytest.raises(KeyboardInterrupt):
            task.train(yolo, tmp_path / "out", task.train_config({"epochs": 1}), Compute("cpu", 3, tmp_path / "cache"))
    finally:
        torch.set_num_threads(before)
    assert given == {"threads": 3}
