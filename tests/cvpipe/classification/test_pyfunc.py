"""The classifier's MLflow model: saved and loaded as MLflow does; image files in, one class name each,
read as training reads files; the answer `mlflow models serve` gives a base64 request is predict's."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cvpipe.classification.data import decode_resized
from cvpipe.data.model_input import INPUTS, images_frame, request_body

NAMES = ["blue", "green", "red"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A LittleVGG for three classes (untrained: the input path is under test), saved as the train stage saves."""
    import torch

    from cvpipe.classification.models import build_model, save_trained

    path = tmp_path_factory.mktemp("trained") / "model.pt"
    torch.manual_seed(0)
    save_trained(path, build_model("littlevgg", len(NAMES)), "littlevgg", NAMES, 32)
    return path


def saved(model_file, path, signature):
    import mlflow.pyfunc

    from cvpipe.classification import mlflow_model

    mlflow.pyfunc.save_model(path, python_model=mlflow_model.__file__, signature=signature, artifacts={"model": str(model_file)})
    return mlflow.pyfunc.load_model(str(path))


@pytest.fixture(scope="module")
def saved_model(model_file, tmp_path_factory):
    """The classifier saved as an MLflow model and loaded back as MLflow loads it."""
    from cvpipe.classification.pyfunc import SIGNATURE

    return saved(model_file, tmp_path_factory.mktemp("pyfunc") / "mlflow", SIGNATURE)


@pytest.fixture
def files(tmp_path):
    """Images of different sizes, modes and formats."""
    rng = np.random.default_rng(0)
    paths = []
    for k, (h, w, name) in enumerate([(40, 56, "a.png"), (32, 32, "b.jpg"), (90, 30, "c.png"), (20, 24, "d.jpg")]):
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        (image.convert("L") if k == 2 else image).save(tmp_path / name)  # one grey file
        paths.append(tmp_path / name)
    return paths


def test_a_class_name_per_file_from_the_pixels_training_reads(saved_model, files):
    predicted = saved_model.predict(images_frame(files))
    classifier = saved_model.unwrap_python_model()
    expected = classifier.probabilities([decode_resized(p, 32) for p in files]).argmax(1)
    assert predicted == [NAMES[k] for k in expected]
    assert saved_model.predict(pd.DataFrame({"image": [p.read_bytes() for p in files]})) == predicted


def test_the_scoring_server_answers_a_base64_request_with_what_predict_returns(saved_model, files):
    from mlflow.pyfunc.scoring_server import invocations

    answer = invocations(request_body(files), "application/json", saved_model, INPUTS)  # what POST /invocations runs
    assert answer.status == 200, answer.response
    assert json.loads(answer.response) == {"predictions": saved_model.predict(images_frame(files))}


def test_bad_rows_are_named_and_pixel_arrays_are_refused_by_the_signature(saved_model, files):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match=r"image 1: cannot decode it as an image file"):
        saved_model.predict(pd.DataFrame({"image": [files[0].read_bytes(), b"\x89PNG but not really"]}))
    with pytest.raises(MlflowException, match=r"with schema '\['image': binary \(required\)\]'"):
        saved_model.predict(np.zeros((1, 32, 32, 3), dtype=np.uint8))


def test_a_model_registered_before_models_took_files_still_predicts_from_pixels(model_file, saved_model, files, tmp_path):
    """What the promotion gate meets when it scores an older champion with this code (cvpipe imported first)."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    from cvpipe.data.model_input import takes_files

    pixels = Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))])
    legacy = saved(model_file, tmp_path / "legacy", ModelSignature(inputs=pixels, outputs=Schema([ColSpec("string", name="label")])))
    assert not takes_files(legacy) and takes_files(saved_model)
    images = np.stack([decode_resized(p, 32) for p in files])
    assert legacy.predict(images) == saved_model.predict(images_frame(list(images))) == saved_model.predict(images_frame(files))
