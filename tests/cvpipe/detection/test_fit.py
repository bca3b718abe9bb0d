"""Detection training: parameters, the history rows, a model ultralytics does not ship."""

from __future__ import annotations

import pytest

from cvpipe.core.errors import ParamsError
from cvpipe.detection.fit import DetectionConfig, history_rows
from cvpipe.tasks import Compute


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
