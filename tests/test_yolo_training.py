"""A YOLO model built from YAML trains on the converted LabelImg sample as ultralytics expects."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cvpipe.sources.samples import generate
from cvpipe.tasks import Compute
from stages import convert

pytestmark = pytest.mark.slow


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_one_epoch_on_the_converted_sample_without_label_warnings(tmp_path, monkeypatch):
    from ultralytics import YOLO
    from ultralytics.utils import SETTINGS

    # no run of its own in an MLflow store; dict.update changes this process only, where
    # SETTINGS.update would rewrite the user's settings.json (docs/ultralytics.md)
    user_settings = Path(SETTINGS.file)
    before = user_settings.read_bytes() if user_settings.exists() else None
    dict.update(SETTINGS, {"mlflow": False})
    root = generate("voc", tmp_path / "underground")
    convert.run("voc-yolo", tmp_path / "yolo", root / "annotations", root / "images", val_fraction=0.25)
    monkeypatch.chdir(tmp_path)  # data.yaml's path is relative to where training runs, as with `dvc repro`
    (tmp_path / "yolo" / "data.yaml").write_text(
        (tmp_path / "yolo" / "data.yaml").read_text().replace(f"path: {(tmp_path / 'yolo').as_posix()}", "path: yolo"))
    log = Collect()
    logging.getLogger("ultralytics").addHandler(log)
    try:
        model = YOLO("yolov8n.yaml")
        model.train(data="yolo/data.yaml", epochs=1, imgsz=128, batch=8, workers=0, device="cpu", plots=False,
                    project=str(tmp_path / "runs"), name="smoke", exist_ok=True, verbose=False, amp=False)
    finally:
        logging.getLogger("ultralytics").removeHandler(log)
    text = "\n".join(log.lines)
    assert "missing" not in text.lower() and "no labels" not in text.lower(), text[-2000:]
    from ultralytics.data.utils import load_dataset_cache_file

    for split in ("train", "val"):
        found, missing, _empty, corrupt, total = load_dataset_cache_file(tmp_path / "yolo" / "labels" / f"{split}.cache")["results"]
        images = len(list((tmp_path / "yolo" / "images" / split).iterdir()))
        assert (found, missing, corrupt, total) == (images, 0, 0, images), split
    assert (tmp_path / "runs" / "smoke" / "weights" / "last.pt").is_file()
    assert not (tmp_path / "mlruns").exists()
    assert (user_settings.read_bytes() if user_settings.exists() else None) == before  # the user's settings untouched


def test_an_interrupted_detection_training_resumes_from_last_pt_and_publishes_only_reproducible_files(tmp_path, monkeypatch):
    from cvpipe.detection.fit import Interrupted
    from cvpipe.detection.task import DetectionTask

    root = generate("voc", tmp_path / "underground")
    convert.run("voc-yolo", tmp_path / "yolo", root / "annotations", root / "images", val_fraction=0.25)
    monkeypatch.chdir(tmp_path)
    params = {"epochs": 3, "imgsz": 64, "batch": 32, "patience": 5, "augment": {"mosaic": 0.0}}
    task, cache, out = DetectionTask(), tmp_path / "cache", tmp_path / "models" / "underground"
    config, compute = task.train_config(params), Compute("cpu", 2, cache)
    with pytest.raises(Interrupted):
        task.train(tmp_path / "yolo", out, config, compute, stop_after=1)
    runs = list((cache / "yolo-runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "weights" / "last.pt").is_file() and not out.exists()
    result = task.train(tmp_path / "yolo", out, config, compute)
    assert result.resumed_from_epoch == 0 and result.epochs == 3  # one epoch done, two more after the resume
    assert sorted(p.name for p in out.iterdir()) == ["classes.json", "history.csv", "model.pt", "train.json"]
    assert [int(line.split(",")[0]) for line in (out / "history.csv").read_text().splitlines()[1:]] == [1, 2, 3]
    assert not (cache / "yolo-runs" / runs[0].name).exists()  # finished: the run folder is gone
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlruns").exists()
    from ultralytics import YOLO

    assert YOLO(str(out / "model.pt")).names == dict(enumerate(["platform sign", "roundel", "way out"]))
