"""The segmenter's MLflow model: saved and loaded as MLflow does; nuclei as run-length encodings that
decode to the label image it also returns, never overlapping, with the evaluated settings as defaults;
image files read as training reads them, and the answer `mlflow models serve` gives a base64 request."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cvpipe.data.model_input import images_frame, request_body
from cvpipe.data.rle import dsb_decode


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A U-Net trained for a few epochs on bright discs, saved as the train stage saves, as an MLflow model."""
    import mlflow.pyfunc

    from cvpipe.segmentation import mlflow_model
    from cvpipe.segmentation.fit import SegmentationConfig, fit
    from cvpipe.segmentation.models import save_trained
    from cvpipe.segmentation.pyfunc import signature
    from tests.cvpipe.segmentation.test_fit import SMALL, blobs

    base = tmp_path_factory.mktemp("pyfunc")
    config = SegmentationConfig.from_params(SMALL | {"epochs": 12})
    trained = fit(blobs(2, n=12), blobs(3, n=3), config, torch.device("cpu"))
    save_trained(base / "model.pt", trained.model, config.spec)
    settings = {"instances": {"threshold": 0.5, "border_threshold": 0.5, "min_distance": 3, "min_area": 5, "smooth": 0.0},
                "input_mode": "crop", "input_size": 32}
    (base / "settings.json").write_text(json.dumps(settings))
    mlflow.pyfunc.save_model(base / "mlflow", python_model=mlflow_model.__file__, signature=signature(settings["instances"]),
                             artifacts={"model": str(base / "model.pt"), "settings": str(base / "settings.json")})
    return base


def test_each_image_gets_its_nuclei_as_rle_that_decode_to_its_label_image(saved_model):
    import mlflow.pyfunc

    from tests.cvpipe.segmentation.test_fit import blobs

    model = mlflow.pyfunc.load_model(str(saved_model / "mlflow"))
    images = blobs(9, n=2, size=44)[0]
    out = model.predict(images_frame(images), params={"output": "labels"})
    assert list(out.columns) == ["count", "height", "width", "encoded_pixels", "labels"] and len(out) == 2
    for _, row in out.iterrows():
        assert row["count"] >= 2 and (row["height"], row["width"]) == (44, 44)
        masks = [dsb_decode(e, row["height"], row["width"]) for e in row["encoded_pixels"]]
        assert np.max(np.sum(masks, axis=0)) == 1  # no pixel in two nuclei
        for k, mask in enumerate(masks, start=1):
            assert (mask.astype(bool) == (row["labels"] == k)).all()
    plain = model.predict(images_frame(images))
    assert "labels" not in plain.columns and plain["count"].tolist() == out["count"].tolist()


def test_images_of_any_size_and_mode_are_read_as_training_reads_them_and_bad_rows_are_named(saved_model, tmp_path):
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException
    from PIL import Image

    from cvpipe.segmentation.data import read_rgb
    from cvpipe.segmentation.pyfunc import rgb
    from tests.cvpipe.segmentation.test_fit import blobs

    model = mlflow.pyfunc.load_model(str(saved_model / "mlflow"))
    small, large = blobs(9, n=1, size=36)[0][0], blobs(9, n=1, size=52)[0][0]
    Image.fromarray(small[..., 0]).save(tmp_path / "grey.png")  # the blobs are grey: one channel is the image
    Image.fromarray(large).convert("RGBA").save(tmp_path / "rgba.png")  # DSB's stage1 files are RGBA
    out = model.predict(images_frame([small, tmp_path / "grey.png", tmp_path / "rgba.png"]))
    assert [(r["height"], r["width"]) for _, r in out.iterrows()] == [(36, 36), (36, 36), (52, 52)]
    assert out.iloc[0]["encoded_pixels"] == out.iloc[1]["encoded_pixels"] and out.iloc[2]["count"] >= 1
    deep = Image.fromarray(np.arange(48 * 40, dtype=np.uint16).reshape(40, 48) * 9).convert("I;16")
    deep.save(tmp_path / "deep.png")  # 16-bit: stretched to 8 bits, not clipped
    with Image.open(tmp_path / "deep.png") as im:
        assert np.array_equal(rgb(im), read_rgb(tmp_path / "deep.png")) and rgb(im).max() == 255
    with pytest.raises(MlflowException, match=r"image 1: cannot decode it as an image file"):
        model.predict(images_frame([small, b"GIF89a, truncated"]))


def test_the_scoring_server_answers_a_base64_request_as_predict_does(saved_model):
    import mlflow.pyfunc
    from mlflow.pyfunc.scoring_server import invocations

    from tests.cvpipe.segmentation.test_fit import blobs

    model = mlflow.pyfunc.load_model(str(saved_model / "mlflow"))
    images = blobs(9, n=2, size=44)[0]
    answer = invocations(request_body(images, params={"min_area": 8}), "application/json", model, model.metadata.get_input_schema())
    assert answer.status == 200, answer.response
    expected = model.predict(images_frame(images), params={"min_area": 8})
    assert json.loads(answer.response) == {"predictions": expected.to_dict(orient="records")} and expected["count"].min() >= 1


def test_params_override_the_evaluated_settings(saved_model):
    import mlflow.pyfunc

    from tests.cvpipe.segmentation.test_fit import blobs

    model = mlflow.pyfunc.load_model(str(saved_model / "mlflow"))
    image = images_frame(blobs(9, n=1, size=44)[0])
    default = model.predict(image).iloc[0]["count"]
    assert model.predict(image, params={"min_area": 10_000}).iloc[0]["count"] == 0 < default
    assert model.predict(image, params={"threshold": 0.999999}).iloc[0]["count"] <= default
    assert model.metadata.get_params_schema().to_dict()[2] == {"name": "min_area", "type": "long", "default": 5, "shape": None}
