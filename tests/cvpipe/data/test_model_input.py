"""The models' input: encoded image files in a column ``image``, base64 over HTTP, decoded as the pipeline
reads files; bad rows named by index. (Each task's model: tests/cvpipe/*/test_pyfunc.py.)"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from PIL import Image

from cvpipe.data.model_input import COLUMN, INPUTS, decode_images, encode_png, images_frame, request_body


def rgb(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def test_paths_bytes_and_pixels_make_the_same_rows_and_decode_to_the_same_pixels(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    frame = images_frame([tmp_path / "x.png", (tmp_path / "x.png").read_bytes(), pixels])
    assert list(frame.columns) == [COLUMN] and INPUTS.input_names() == [COLUMN]
    assert frame[COLUMN][0] == frame[COLUMN][1] and frame[COLUMN][2][:8] == b"\x89PNG\r\n\x1a\n"
    for decoded in decode_images(frame, rgb):
        assert np.array_equal(decoded, pixels)  # PNG is lossless: a caller holding pixels gets those pixels back


def test_pixel_arrays_pass_as_they_are_for_models_registered_before_models_took_files():
    pixels = np.random.default_rng(1).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    assert all(np.array_equal(a, b) for a, b in zip(decode_images(pixels, rgb), pixels, strict=True))


def test_the_request_body_is_what_the_scoring_server_decodes_back_to_the_file_bytes(tmp_path):
    from mlflow.pyfunc.scoring_server import _split_data_and_params, infer_and_parse_data

    Image.new("RGB", (7, 5), (200, 10, 10)).save(tmp_path / "a.jpg")
    body = request_body([tmp_path / "a.jpg"], params={"conf": 0.5})
    assert json.loads(body)["dataframe_records"][0][COLUMN] == base64.b64encode((tmp_path / "a.jpg").read_bytes()).decode()
    data, params = _split_data_and_params(body)  # what `mlflow models serve` does with a POSTed body
    parsed = infer_and_parse_data(data, INPUTS)
    assert isinstance(parsed, pd.DataFrame) and parsed[COLUMN][0] == (tmp_path / "a.jpg").read_bytes() and params == {"conf": 0.5}


def test_the_exif_orientation_tag_is_ignored_as_everywhere_in_the_pipeline():
    stored = np.zeros((4, 8, 3), dtype=np.uint8)
    stored[:, :4] = 255  # white left half, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees to display"
    out = io.BytesIO()
    Image.fromarray(stored).save(out, format="JPEG", exif=exif, quality=100)
    (decoded,) = decode_images(images_frame([out.getvalue()]), rgb)
    assert decoded.shape == (4, 8, 3)


def test_undecodable_rows_are_named_by_index_with_the_request_format():
    good = encode_png(np.zeros((3, 3, 3), dtype=np.uint8))
    rows = decode_images(pd.DataFrame({COLUMN: [good, b"not an image"]}), rgb)
    with pytest.raises(MlflowException, match=r"image 1: cannot decode it as an image file \(not a format Pillow knows\); "
                                              r'over HTTP post .*"dataframe_records"') as caught:
        list(rows)
    assert caught.value.get_http_status_code() == 400
    truncated = good[: len(good) // 2]
    with pytest.raises(MlflowException, match="image 0: cannot decode it as an image file"):
        list(decode_images(pd.DataFrame({COLUMN: [truncated]}), rgb))
    # base64 text where file bytes belong: what an `inputs` JSON body gives the model
    with pytest.raises(MlflowException, match=r"image 0: .*these bytes are base64 text: MLflow decodes base64 only in dataframe_records"):
        list(decode_images(pd.DataFrame({COLUMN: [base64.b64encode(good)]}), rgb))
    with pytest.raises(MlflowException, match="image 0: expected the bytes of an image file, got str"):
        list(decode_images(pd.DataFrame({COLUMN: ["x.png"]}), rgb))


def test_pixels_that_are_not_an_rgb_image_are_refused():
    with pytest.raises(ValueError, match=r"expected H x W x 3 uint8 RGB pixels, got shape \(3, 3, 3\) of float32"):
        encode_png(np.zeros((3, 3, 3), dtype=np.float32))
