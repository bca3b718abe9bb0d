"""Detection training: parameters, the history rows, a model ultralytics does not ship."""

from __future__ import annotations

import pytest

from cvpipe.core.errors import ParamsError
from cvpipe.detection.fit import DetectionConfig, history_rows


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


def test_history_drops_the_wall_clock_and_uses_names_mlflow_accepts(tmp_path):
    (tmp_path / "results.csv").write_text("epoch,time,train/box_loss,metrics/mAP50(B),metrics/mAP50-95(B)\n1,3.5,2.0,0.5,0.25\n")
    assert history_rows(tmp_path / "results.csv") == [{"epoch": 1, "train/box_loss": 2.0, "val/mAP50": 0.5, "val/mAP50-95": 0.25}]


def test_a_model_yaml_ultralytics_does_not_ship_is_named_before_training(yolo, tmp_path):
    from cvpipe.detection.task import DetectionTask

    with pytest.raises(ParamsError, match=r"model: 'yolov99n\.yaml' is neither a model YAML ultralytics ships nor a local file"):
        DetectionTask().train(yolo, tmp_path / "out", {"model": "yolov99n.yaml", "epochs": 1}, "cpu", tmp_path / "cache")
    assert not (tmp_path / "out").exists()
