"""A detector exported through ultralytics' exporter: onnxruntime and libtorch give the raw candidates the
registered network gives (scores within 1e-4, boxes within 0.01 px), and ``YOLO("model.onnx")`` finds the
boxes the pyfunc finds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cvpipe.detection.task import DetectionTask
from tests.cvpipe.detection.test_pyfunc import NAMES, picture, saved_model  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def loaded(saved_model):  # noqa: F811
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(saved_model / "mlflow")).unwrap_python_model()


def raw(loaded, x: np.ndarray) -> np.ndarray:
    import torch
    from ultralytics import YOLO

    network = YOLO(loaded.model.ckpt_path, task="detect").model.float().eval()
    with torch.no_grad():
        return network(torch.from_numpy(x))[0].numpy()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_the_exported_detector_gives_the_networks_candidates(loaded, fmt, tmp_path):
    import torch

    meta = DetectionTask().export(loaded, fmt, tmp_path)
    path = tmp_path / meta["file"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # nothing else left beside it
    assert meta["input"]["shape"] == [1, 3, 96, 96] and meta["classes"] == NAMES
    assert meta["output"]["shape"] == [1, 4 + len(NAMES), "candidates"] and json.dumps(meta)
    x = (np.random.default_rng(0).random((1, 3, 96, 96)) ).astype(np.float32)
    if fmt == "onnx":
        import onnxruntime

        got = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    else:
        got = torch.jit.load(str(path))(torch.from_numpy(x))
        got = (got[0] if isinstance(got, (list, tuple)) else got).detach().numpy()
    expected = raw(loaded, x)
    assert got.shape == expected.shape == (1, 4 + len(NAMES), expected.shape[2])
    assert np.abs(got[:, 4:] - expected[:, 4:]).max() < 1e-4
    assert np.abs(got[:, :4] - expected[:, :4]).max() < 0.01


def test_ultralytics_runs_the_onnx_file_and_finds_the_pyfuncs_boxes(loaded, tmp_path):
    from ultralytics import YOLO

    meta = DetectionTask().export(loaded, "onnx", tmp_path)
    image = picture(5, 120, 160)
    expected = loaded.detect([image], conf=0.0001, iou=0.7, max_det=10)[0]
    onnx = YOLO(str(tmp_path / meta["file"]), task="detect")
    r = onnx.predict(np.ascontiguousarray(image[..., ::-1]), imgsz=96, conf=0.0001, iou=0.7, max_det=10, device="cpu", verbose=False)[0]
    assert len(expected[0]) > 0
    assert np.allclose(r.boxes.xyxy.numpy(), expected[0], atol=0.05)
    assert (r.boxes.cls.numpy().astype(int) == expected[1]).all()


def test_predict_gives_the_pyfuncs_boxes_one_row_each_and_draws_them(loaded, saved_model, monkeypatch):  # noqa: F811
    import mlflow.pyfunc

    from cvpipe.data.model_input import images_frame
    from cvpipe.detection import pyfunc

    monkeypatch.setitem(pyfunc.DEFAULTS, "conf", 0.0001)  # an untrained network: every candidate is unsure
    monkeypatch.setitem(pyfunc.DEFAULTS, "max_det", 6)
    images = [picture(6, 120, 160), picture(7, 96, 128)]
    predicted = DetectionTask().predict(loaded, images)
    expected = mlflow.pyfunc.load_model(str(saved_model / "mlflow")).predict(images_frame(images), params=dict(pyfunc.DEFAULTS))
    assert [len(p.rows) for p in predicted] == [6, 6]
    for p, (_, row), image in zip(predicted, expected.iterrows(), images, strict=True):
        # predictions.csv rounds for people (boxes to 0.01 px, scores to 4 places); the pyfunc keeps them whole for the AP
        assert [[r["x_min"], r["y_min"], r["x_max"], r["y_max"]] for r in p.rows] == [[round(v, 2) for v in b] for b in row["boxes"]]
        assert [r["class"] for r in p.rows] == row["classes"] and [r["score"] for r in p.rows] == [round(s, 4) for s in row["scores"]]
        assert list(p.rows[0]) == list(DetectionTask.prediction_columns)
        assert p.picture.shape == image.shape and not np.array_equal(p.picture, image)
        assert p.caption == f"{len(p.rows)} object{'' if len(p.rows) == 1 else 's'}"
