"""EXIF orientation: read in both byte orders, reset to 1 by patching two bytes, never raising."""

from __future__ import annotations

import io
import random
import struct

import numpy as np
import pytest
from PIL import Image, ImageOps

from cvpipe.data.exif import needs_upright, orientation, upright_tag

ORIENTATION = 0x0112


def jpeg(value: int | None = None, endian: str = "<", size=(96, 48)) -> bytes:
    """A JPEG (JFIF APP0, then the Exif APP1 as Pillow writes it) with an Orientation, a Make and a
    Software tag around it, so that patching the wrong entry would show."""
    im = Image.new("RGB", size, (0, 0, 255))
    im.paste((255, 0, 0), (6, 28, 30, 44))
    buffer = io.BytesIO()
    if value is None:
        im.save(buffer, "JPEG", quality=90)
    else:
        exif = Image.Exif()
        exif.endian = endian
        exif[0x010F] = "Camera"
        exif[ORIENTATION] = value
        exif[0x0131] = "cvpipe tests"
        im.save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def pil_exif(data: bytes) -> dict:
    with Image.open(io.BytesIO(data)) as im:
        return dict(im.getexif())


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def tiff(order: bytes, entries: list[tuple[int, int, int, bytes]], ifd: int = 8) -> bytes:
    """A TIFF structure by hand: header, then IFD0 of (tag, type, count, 4-byte value) entries."""
    fmt = "<" if order == b"II" else ">"
    body = b"".join(struct.pack(fmt + "HHI", tag, kind, count) + value for tag, kind, count, value in entries)
    return order + struct.pack(fmt + "HI", 42, ifd) + bytes(ifd - 8) + struct.pack(fmt + "H", len(entries)) + body + bytes(4)


def with_app1(payload: bytes, base: bytes | None = None, after: int = 2) -> bytes:
    """``base`` (a JPEG without EXIF) with an APP1 segment of ``payload`` inserted at byte ``after``."""
    base = jpeg() if base is None else base
    return base[:after] + segment(0xE1, payload) + base[after:]


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("value", range(1, 9))
def test_orientation_reads_what_pillow_reads_in_both_byte_orders(endian, value):
    data = jpeg(value, endian)
    assert data[data.index(b"Exif\0\0") + 6 :][:2] == (b"II" if endian == "<" else b"MM")
    assert data[2:4] == b"\xff\xe0"  # JFIF's APP0 comes first: the Exif segment is not the first one
    assert orientation(data) == pil_exif(data)[ORIENTATION] == value


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("value", range(2, 9))
def test_upright_tag_patches_only_the_two_bytes_of_the_value(endian, value):
    data = jpeg(value, endian)
    upright = upright_tag(data)
    assert len(upright) == len(data)
    changed = [k for k, (a, b) in enumerate(zip(data, upright, strict=True)) if a != b]
    assert 1 <= len(changed) <= 2 and changed[-1] - changed[0] <= 1
    assert orientation(upright) == 1
    assert pil_exif(upright) == {**pil_exif(data), ORIENTATION: 1}  # the other tags are as they were
    assert np.array_equal(pixels(upright), pixels(data))  # nothing re-encoded
    with Image.open(io.BytesIO(upright)) as im:
        assert ImageOps.exif_transpose(im).size == (96, 48)  # a reader that honours the tag sees the stored pixels


def test_patched_bytes_are_the_orientation_value_in_each_byte_order():
    little, big = upright_tag(jpeg(6, "<")), upright_tag(jpeg(6, ">"))
    assert little[little.index(b"\x12\x01\x03\x00\x01\x00\x00\x00") + 8 :][:4] == b"\x01\x00\x00\x00"
    assert big[big.index(b"\x01\x12\x00\x03\x00\x00\x00\x01") + 8 :][:4] == b"\x00\x01\x00\x00"


@pytest.mark.parametrize("data", [
    jpeg(1, "<"), jpeg(1, ">"), jpeg(None), b"", b"\xff", b"\xff\xd8", b"\xff\xd8\xff\xd9", b"not an image at all",
], ids=["orientation 1 II", "orientation 1 MM", "no EXIF", "empty", "one byte", "SOI only", "SOI EOI", "text"])
def test_nothing_to_do_returns_the_same_object(data):
    assert upright_tag(data) is data
    assert orientation(data) == 1


def test_png_with_an_exif_orientation_is_left_alone():
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (8, 4)).save(buffer, "PNG", exif=exif)
    data = buffer.getvalue()
    assert pil_exif(data)[ORIENTATION] == 6  # the tag is there, in an eXIf chunk
    assert upright_tag(data) is data and orientation(data) == 1


def test_exif_after_other_segments_and_after_an_xmp_app1_is_found():
    exif = b"Exif\0\0" + tiff(b"MM", [(ORIENTATION, 3, 1, struct.pack(">HH", 8, 0))])
    xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>"
    base = jpeg()
    data = base[:2] + segment(0xFE, b"a comment") + segment(0xE1, xmp) + segment(0xE1, exif) + base[2:]
    assert orientation(data) == pil_exif(data)[ORIENTATION] == 8
    assert orientation(upright_tag(data)) == 1 and pil_exif(upright_tag(data))[ORIENTATION] == 1


def test_an_exif_segment_after_the_image_data_is_not_read():
    base = jpeg()
    end = base.rindex(b"\xff\xd9")
    data = base[:end] + segment(0xE1, b"Exif\0\0" + tiff(b"II", [(ORIENTATION, 3, 1, struct.pack("<HH", 6, 0))])) + base[end:]
    assert orientation(data) == 1 and upright_tag(data) is data


@pytest.mark.parametrize("payload", [
    b"Exif\0\0",  # no TIFF header
    b"Exif\0\0II*",  # a header cut short inside the segment
    b"Exif\0\0XX*\0\x08\0\0\0",  # no byte order
    b"Exif\0\0II\x2b\0\x08\0\0\0",  # BigTIFF's magic number
    b"Exif\0\0II*\0\x00\x01\0\0",  # IFD0 past the segment
    b"Exif\0\0II*\0\x04\0\0\0",  # IFD0 inside the header
    b"Exif\0\0" + tiff(b"II", [(ORIENTATION, 3, 1, b"\x06\0\0\0")])[:-10],  # the entry cut short
    b"Exif\0\0" + tiff(b"II", [(ORIENTATION, 4, 1, b"\x06\0\0\0")]),  # a LONG, not a SHORT
    b"Exif\0\0" + tiff(b"MM", [(ORIENTATION, 3, 0, b"\0\x06\0\0")]),  # no value
    b"Exif\0\0II*\0\x08\0\0\0\xff\xff" + struct.pack("<HHI", 0x010F, 2, 4) + b"abc\0",  # more entries than it holds
], ids=["empty", "short header", "byte order", "bigtiff", "ifd past end", "ifd in header", "cut entry", "long",
        "count 0", "entry count"])
def test_malformed_exif_is_returned_unchanged(payload):
    data = with_app1(payload)
    assert upright_tag(data) is data and orientation(data) == 1


def test_a_segment_length_below_two_or_past_the_end_does_not_loop_or_raise():
    base = jpeg()
    for length in (b"\x00\x00", b"\x00\x01", b"\xff\xff"):
        data = base[:2] + b"\xff\xe1" + length + b"Exif\0\0II*\0\x08\0\0\0" + base[2:]
        assert upright_tag(data) is data and orientation(data) == 1


def test_truncated_and_corrupted_files_never_raise():
    # every prefix of a file with an orientation, and every single byte of its header changed
    data = jpeg(6, "<")
    start = data.index(b"Exif\0\0")
    header_end = start + 200
    for cut in range(header_end):
        prefix = data[:cut]
        out = upright_tag(prefix)
        assert out is prefix or (len(out) == cut and sum(a != b for a, b in zip(out, prefix, strict=True)) in (1, 2))
        assert orientation(prefix) in (1, 6)
    rng = random.Random(0)
    for k in range(2, header_end):
        for value in (0x00, 0xFF, rng.randrange(256)):
            bad = data[:k] + bytes([value]) + data[k + 1 :]
            out = upright_tag(bad)
            assert out is bad or sum(a != b for a, b in zip(out, bad, strict=True)) in (1, 2)


def test_needs_upright_is_false_only_when_the_file_needs_nothing():
    # the YOLO writer links a file unread when its first bytes say it needs nothing
    for data in (jpeg(6, "<"), jpeg(8, ">"), jpeg(1, "<"), jpeg(None), with_app1(b"Exif\0\0II*")):
        for n in range(len(data) + 1):
            if not needs_upright(data[:n]):
                assert upright_tag(data) is data
    assert needs_upright(jpeg(6)[:200]) and needs_upright(jpeg(3, ">"))
    assert not needs_upright(jpeg(1)) and not needs_upright(jpeg(None)) and not needs_upright(b"\x89PNG\r\n\x1a\n")
