"""The segmenter's MLflow model: saved and loaded as MLflow does; nuclei as run-length encodings that
decode to the label image it also returns, never overlapping, with the evaluated settings as defaults."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cvpipe.rle import dsb_decode


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
    out = model.predict(np.stack(images), params={"output": "labels"})
    assert list(out.columns) == ["count", "height", "width", "encoded_pixels", "labels"] and len(out) == 2
    for _, row in out.iterrows():
        assert row["count"] >= 2 and (row["height"], row["width"]) == (44, 44)
        masks = [dsb_decode(e, row["height"], row["width"]) for e in row["encoded_pixels"]]
        assert np.max(np.sum(masks, axis=0)) == 1  # no pixel in two nuclei
        for k, mask in enumerate(masks, start=1):
            assert (mask.astype(bool) == (row["labels"] == k)).all()
    plain = model.predict(np.stack(images))
    assert "labels" not in plain.columns and plain["count"].tolist() == out["count"].tolist()


def test_images_of_different_sizes_and_inputs_it_cannot_take(saved_model):
    import mlflow.pyfunc

    from tests.cvpipe.segmentation.test_fit import blobs

    model = mlflow.pyfunc.load_model(str(saved_model / "mlflow"))
    small, large = blobs(9, n=1, size=36)[0][0], blobs(9, n=1, size=52)[0][0]
    uneven = np.empty(2, dtype=object)
    uneven[0], uneven[1] = small, large
    out = model.predict(uneven)
    assert [(r["height"], r["width"]) for _, r in out.iterrows()] == [(36, 36), (52, 52)]
    grey = np.empty(1, dtype=object)
    grey[0] = small[..., 0]
    with pytest.raises(Exception, match=r"image 0: expected an H x W x 3 uint8 RGB array, got shape \(36, 36\)"):
        model.predict(grey)


def test_params_override_the_evaluated_settings(saved_model):
    import mlflow.pyfunc

    from tests.cvpipe.segmentation.test_fit import blobs

    model = mlflow.pyfunc.load_model(str(saved_model / "mlflow"))
    image = blobs(9, n=1, size=44)[0][0][None]
    default = model.predict(image).iloc[0]["count"]
    assert model.predict(image, params={"min_area": 10_000}).iloc[0]["count"] == 0 < default
    assert model.predict(image, params={"threshold": 0.999999}).iloc[0]["count"] <= default
    assert model.metadata.get_params_schema().to_dict()[2] == {"name": "min_area", "type": "long", "default": 5, "shape": None}
