"""The detector's MLflow model: saved and loaded as MLflow does, its output schema, the same boxes as
ultralytics gives for the image file (image files in, as every task's model takes them), and the answer
`mlflow models serve` gives a base64 request."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cvpipe.data.classmap import ClassMap
from cvpipe.data.model_input import images_frame, request_body
from cvpipe.detection.ultra import load, portable_checkpoint

NAMES = ["roundel", "way out", "platform sign"]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """An untrained YOLOv8n for three classes, published as the train stage publishes, saved as an MLflow model."""
    import mlflow.pyfunc
    import torch

    load()
    from ultralytics.nn.tasks import DetectionModel

    from cvpipe.detection import mlflow_model
    from cvpipe.detection.pyfunc import SIGNATURE

    base = tmp_path_factory.mktemp("pyfunc")
    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=len(NAMES), verbose=False)
    model.names = dict(enumerate(NAMES))
    model.args = {"imgsz": 96, "task": "detect", "data": "/somewhere/absolute/data.yaml"}
    torch.save({"model": model.half(), "train_args": {}, "date": "now"}, base / "best.pt")
    portable_checkpoint(base / "best.pt", base / "model.pt", {"imgsz": 96})
    ClassMap.from_names(NAMES).save(base / "classes.json")
    mlflow.pyfunc.save_model(base / "mlflow", python_model=mlflow_model.__file__, signature=SIGNATURE,
                             artifacts={"model": str(base / "model.pt"), "classes": str(base / "classes.json")})
    return base


def picture(seed: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((h, w, 3), dtype=np.uint8)
    image[..., 0] = 220  # red, where BGR would read blue
    image[h // 4: h // 2, w // 4: w // 2] = rng.integers(0, 255, 3)
    return image


def test_one_row_per_image_with_pixel_boxes_class_names_and_scores(saved_model):
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(saved_model / "mlflow"))
    images = [picture(0, 120, 160), picture(1, 80, 96)]
    out = model.predict(images_frame([images[0], images[0]]), params={"conf": 0.0001, "max_det": 7})
    assert list(out.columns) == ["boxes", "classes", "scores"] and len(out) == 2
    row = out.iloc[0]
    assert 0 < len(row["boxes"]) <= 7 and len(row["boxes"]) == len(row["classes"]) == len(row["scores"])
    assert set(row["classes"]) <= set(NAMES)
    boxes = np.asarray(row["boxes"])
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 160).all() and (boxes[:, 3] <= 120).all()
    assert list(row["scores"]) == sorted(row["scores"], reverse=True)
    assert out.iloc[1]["boxes"] == row["boxes"]
    nothing = model.predict(images_frame([images[1]]), params={"conf": 0.999})
    assert nothing.iloc[0]["boxes"] == [] and nothing.iloc[0]["classes"] == []


def test_the_pyfunc_gives_ultralytics_the_pixels_it_reads_from_the_file_and_finds_the_same_boxes(saved_model, tmp_path):
    import cv2
    import mlflow.pyfunc
    from PIL import Image
    from ultralytics import YOLO

    image = picture(2, 120, 160)
    Image.fromarray(image).save(tmp_path / "x.png")
    direct = YOLO(str(saved_model / "model.pt"), task="detect").predict(str(tmp_path / "x.png"), imgsz=96, conf=0.0001,
                                                                          max_det=10, verbose=False)[0]
    loaded = mlflow.pyfunc.load_model(str(saved_model / "mlflow"))
    detector = loaded.unwrap_python_model()
    seen = []
    predict = detector.model.predict
    detector.model.predict = lambda source, **kw: seen.append(source) or predict(source, **kw)
    found = loaded.predict(images_frame([tmp_path / "x.png"]), params={"conf": 0.0001, "max_det": 10}).iloc[0]
    assert np.array_equal(seen[0], cv2.imread(str(tmp_path / "x.png")))  # BGR, as ultralytics loads files
    # the network's boxes and scores as they are: an untrained net scores its boxes within 1e-6 of each other, and
    # scores rounded to 4 places would tie them; boxes rounded to 0.01 px cross IoU thresholds; either way the
    # registry's AP would differ from the evaluation's
    assert found["boxes"] == direct.boxes.xyxy.double().tolist()
    assert found["classes"] == [NAMES[int(c)] for c in direct.boxes.cls]
    assert found["scores"] == direct.boxes.conf.double().tolist()


def test_the_scoring_server_answers_a_base64_request_with_params_as_predict_does(saved_model):
    import mlflow.pyfunc
    from mlflow.pyfunc.scoring_server import invocations

    model = mlflow.pyfunc.load_model(str(saved_model / "mlflow"))
    images = [picture(3, 120, 160), picture(4, 64, 64)]
    body = request_body(images, params={"conf": 0.0001, "max_det": 5})
    answer = invocations(body, "application/json", model, model.metadata.get_input_schema())  # what POST /invocations runs
    assert answer.status == 200, answer.response
    expected = model.predict(images_frame(images), params={"conf": 0.0001, "max_det": 5})
    assert json.loads(answer.response) == {"predictions": expected.to_dict(orient="records")}
    assert 0 < len(expected.iloc[0]["boxes"]) <= 5


def test_the_published_checkpoint_holds_no_path_or_date(saved_model):
    import torch

    ckpt = torch.load(saved_model / "model.pt", weights_only=False)
    assert set(ckpt) == {"model", "train_args", "version"}
    assert ckpt["model"].args == {"imgsz": 96, "task": "detect"}
    assert "/somewhere" not in json.dumps(ckpt["train_args"]) and b"/somewhere" not in (saved_model / "model.pt").read_bytes()
