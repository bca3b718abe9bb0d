"""EXIF orientation: boxes refer to the stored pixels, and the Orientation tag is ignored everywhere.

Annotation tools (LabelImg) draw boxes on the pixels as the file stores them, but readers disagree
about the tag: OpenCV's ``imread``, and so ultralytics' loader, rotates the image by it, while
TensorFlow's ``decode_jpeg`` and PIL's ``Image.open`` do not. So the converters write JPEGs whose
Orientation (tag 0x0112 in IFD0 of the APP1 "Exif" segment) is 1, and every reader sees the stored
pixels the boxes were drawn on. Only the two bytes of the tag's value change: nothing is re-encoded.

Only the first Exif segment counts, as for the readers: Pillow takes IFD0 from it (later ones are
appended to it), OpenCV reads the first APP1 segment only.
"""

from __future__ import annotations

from cvpipe.data.jpeg import RESTARTS, segments

_SOI = b"\xff\xd8"
_EXIF = b"Exif\x00\x00"
_ORIENTATION = 0x0112
_SHORT = 3
_BYTE_ORDERS = {b"II": "little", b"MM": "big"}
NO_LENGTH = RESTARTS | {0x01}  # TEM and RSTn


def orientation(data: bytes) -> int:
    """The EXIF orientation of an image's bytes (1 to 8 when valid); 1 when there is none or it cannot be read."""
    try:
        field = _orientation_field(data)
    except EOFError:
        return 1
    if field is None:
        return 1
    offset, order = field
    return int.from_bytes(data[offset : offset + 2], order)


def upright_tag(data: bytes) -> bytes:
    """``data`` with its EXIF orientation set to 1, losslessly; ``data`` itself when there is nothing to change
    (no EXIF, orientation 1, not a JPEG, or EXIF too malformed to patch)."""
    try:
        field = _orientation_field(data)
    except EOFError:  # a truncated file: leave it to the decoder to report
        return data
    if field is None:
        return data
    offset, order = field
    if int.from_bytes(data[offset : offset + 2], order) == 1:
        return data
    return b"".join((data[:offset], (1).to_bytes(2, order), data[offset + 2 :]))


def needs_upright(head: bytes) -> bool:
    """Whether a file whose first bytes are ``head`` may need ``upright_tag``: False only when ``head``
    shows that the file's orientation is 1 (or absent), so it can be linked without reading the rest."""
    try:
        field = _orientation_field(head)
    except EOFError:  # head ends before the answer: read the whole file
        return True
    if field is None:
        return False
    offset, order = field
    return int.from_bytes(head[offset : offset + 2], order) != 1


def _orientation_field(data: bytes) -> tuple[int, str] | None:
    """Offset and byte order of the Orientation value in IFD0 of a JPEG's first Exif segment; None when
    there is none or the EXIF is malformed. Raises EOFError when ``data`` ends before that is known."""
    if data[:2] != _SOI:
        if len(data) < 2:
            raise EOFError
        return None
    for marker, pos, length, _ in segments(data, NO_LENGTH):  # entropy-coded data starts after SOS
        if marker == 0xDA or marker == 0xD9:  # SOS, EOI: no Exif segment before the image data
            return None
        if length < 2:
            return None
        end = pos + 2 + length
        if marker == 0xE1 and _take(data, pos + 4, 6, end) == _EXIF:  # APP1 is also XMP's
            return _ifd0_orientation(data, pos + 10, end)
    return None


def _ifd0_orientation(data: bytes, tiff: int, end: int) -> tuple[int, str] | None:
    """Offset and byte order of the Orientation entry's value in the TIFF structure at ``tiff``."""
    header = _take(data, tiff, 8, end)
    if header is None:
        return None
    order = _BYTE_ORDERS.get(header[:2])
    if order is None or int.from_bytes(header[2:4], order) != 42:
        return None
    ifd = int.from_bytes(header[4:8], order)
    count = _take(data, tiff + ifd, 2, end) if ifd >= 8 else None
    if count is None:
        return None
    start = tiff + ifd + 2
    for entry in range(start, start + 12 * int.from_bytes(count, order), 12):
        fields = _take(data, entry, 12, end)
        if fields is None:
            return None
        if int.from_bytes(fields[:2], order) == _ORIENTATION:
            kind, values = int.from_bytes(fields[2:4], order), int.from_bytes(fields[4:8], order)
            return (entry + 8, order) if kind == _SHORT and values >= 1 else None
    return None


def _take(data: bytes, at: int, n: int, end: int) -> bytes | None:
    """``n`` bytes at ``at``; None past ``end``, the segment's end (malformed); EOFError past the data."""
    if at + n > end:
        return None
    if at + n > len(data):
        raise EOFError
    return data[at : at + n]
