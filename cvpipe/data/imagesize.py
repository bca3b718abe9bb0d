"""Image width and height from the first bytes of JPEG and PNG files (PIL for other formats).

Conversion needs only the size of every image; reading it straight from the header is several times
faster than opening the file with PIL, which matters at COCO scale.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

from cvpipe.data.jpeg import RESTARTS, segments

# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PNG = b"\x89PNG\r\n\x1a\n"
NO_LENGTH = RESTARTS | {0xD8, 0x01}  # SOI, TEM and RSTn


def _jpeg_size(f, head: bytes) -> tuple[int, int] | None:
    try:
        for marker, pos, _, read in segments(head, NO_LENGTH, lambda: f.read(65536)):
            if marker in _SOF:
                data = read
                while pos + 9 > len(data):
                    more = f.read(65536)
                    if not more:
                        return None
                    data += more
                height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
                return width, height
    except EOFError:
        return None
    return None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) as stored in the file (the same as PIL's ``Image.size``)."""
    with open(path, "rb") as f:
        size = _header_size(f)
    if size is not None:
        return size
    from cvpipe.data.pil import open_image

    with open_image(path) as im:  # other formats, and anything the fast path could not read
        return im.size


def image_size_of(data: bytes) -> tuple[int, int]:
    """(width, height) of an image already in memory, for a writer that reads the bytes anyway."""
    size = _header_size(io.BytesIO(data))
    if size is not None:
        return size
    from cvpipe.data.pil import open_image

    with open_image(io.BytesIO(data)) as im:
        return im.size


def _header_size(f) -> tuple[int, int] | None:
    head = f.read(4096)
    if head[:2] == b"\xff\xd8":
        size = _jpeg_size(f, head)
        if size is not None and size[0] > 0 and size[1] > 0:
            return size
    elif head[:8] == _PNG and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    return None
