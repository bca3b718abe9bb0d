"""What every task's MLflow model takes: encoded image files (PNG, JPEG...), one per row of a column ``image``.

Why files and not pixels: MLflow's scoring server (``mlflow models serve``) builds the model input
from a JSON request with the model's signature, and its only route from base64 text to bytes is a
``binary`` column of ``dataframe_records`` or ``dataframe_split`` JSON
(``mlflow.utils.proto_json_utils.cast_df_types_according_to_schema``); a uint8 tensor input would
have to be posted as nested JSON lists of pixel values, and ``inputs``/``instances`` JSON hands a
binary column the base64 text undecoded. A model has one input schema, so one form serves Python
and HTTP alike: the file's bytes in a DataFrame in Python (:func:`images_frame`), the same bytes
base64-encoded over HTTP (:func:`request_body`). The model decodes them as the pipeline reads image
files (Pillow; the EXIF Orientation tag ignored, as everywhere here: :mod:`cvpipe.data.exif`), so a
served model sees the pixels its evaluation saw.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.types.schema import ColSpec, Schema

COLUMN = "image"
INPUTS = Schema([ColSpec("binary", name=COLUMN)])
BASE64_MAGIC = (b"iVBORw0KGgo", b"/9j/")  # a PNG's and a JPEG's first bytes, base64-encoded
ImageLike = bytes | str | Path | np.ndarray  # file bytes, a file's path, or uint8 H x W x 3 RGB pixels


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 H x W x 3 (or H x W) pixels as a PNG file: lossless, so the model decodes the same pixels."""
    from PIL import Image

    array = np.asarray(pixels)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"expected H x W x 3 uint8 RGB pixels, got shape {array.shape} of {array.dtype}")
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def image_bytes(image: ImageLike) -> bytes:
    """The encoded file of one image: bytes as they are, a path's content, pixels as PNG."""
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    if isinstance(image, (str, Path)):
        return Path(image).read_bytes()
    return encode_png(image)


def images_frame(images: Iterable[ImageLike]) -> pd.DataFrame:
    """The model input for ``images``: ``model.predict(images_frame([path, ...]))``."""
    return pd.DataFrame({COLUMN: [image_bytes(image) for image in images]})


def request_body(images: Iterable[ImageLike], params: dict[str, Any] | None = None) -> str:
    """The JSON body of a ``POST /invocations`` for ``images`` (and the model's ``params``, if any)."""
    body: dict[str, Any] = {"dataframe_records": [{COLUMN: base64.b64encode(image_bytes(im)).decode("ascii")} for im in images]}
    if params:
        body["params"] = params
    return json.dumps(body)


def decode_images(model_input: pd.DataFrame, to_array: Callable[[Any], np.ndarray]) -> Iterator[np.ndarray]:
    """Each row's image, opened with Pillow and made an array by ``to_array(image)``; a row that is not an
    image file Pillow can decode is an ``MlflowException`` naming its index (the scoring server answers it
    with HTTP 400 and that message). Not a DataFrame: pixel arrays, as models registered before took them."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import BAD_REQUEST
    from PIL import Image, UnidentifiedImageError

    from cvpipe.data.pil import open_image

    if not isinstance(model_input, pd.DataFrame):
        # uint8 H x W x 3 pixels: the input of a model registered before models took files (its signature enforced
        # that), run by this code where the process had imported cvpipe first (the promotion gate scoring an old champion)
        for raw in model_input:
            yield to_array(Image.fromarray(np.asarray(raw, dtype=np.uint8)))
        return
    for k, data in enumerate(model_input[COLUMN]):
        if not isinstance(data, (bytes, bytearray)):
            raise MlflowException(f"image {k}: expected the bytes of an image file, got {type(data).__name__}", error_code=BAD_REQUEST)
        try:
            with open_image(io.BytesIO(data)) as image:
                array = to_array(image)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            why = "not a format Pillow knows" if isinstance(exc, UnidentifiedImageError) else str(exc)
            if bytes(data[:16]).startswith(BASE64_MAGIC):
                why += "; these bytes are base64 text: MLflow decodes base64 only in dataframe_records or dataframe_split JSON"
            raise MlflowException(f"image {k}: cannot decode it as an image file ({why}); over HTTP post each file's bytes "
                                  f'base64-encoded, {{"dataframe_records": [{{"{COLUMN}": "<base64>"}}]}}',
                                  error_code=BAD_REQUEST) from None
        yield array


def takes_files(model) -> bool:
    """Whether a loaded pyfunc model takes this module's input; a model registered before models took files
    takes a uint8 N x H x W x 3 tensor instead, and the promotion gate still scores such a champion."""
    schema = model.metadata.get_input_schema()
    return schema is None or not schema.is_tensor_spec()
