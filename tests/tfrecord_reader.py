"""An independent TFRecord reader for tests: its own framing, CRC32C and protobuf wire decoding.

Nothing here comes from the writer's libraries, so a test that reads what they wrote checks the bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected
_TABLE = []
for n in range(256):
    c = n
    for _ in range(8):
        c = (c >> 1) ^ _POLY if c & 1 else c >> 1
    _TABLE.append(c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def records(path: Path) -> list[bytes]:
    """Every record of a TFRecord file; raises if a length or data CRC does not match."""
    data, pos, out = path.read_bytes(), 0, []
    while pos < len(data):
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
        if masked(crc32c(header)) != length_crc:
            raise ValueError(f"{path}: bad length CRC at byte {pos}")
        body = data[pos + 12 : pos + 12 + length]
        (body_crc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
        if masked(crc32c(body)) != body_crc:
            raise ValueError(f"{path}: bad data CRC at byte {pos}")
        out.append(body)
        pos += 16 + length
    return out


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def _fields(buf: bytes):
    """(field number, wire type, value) for each field of a protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _feature(buf: bytes):
    for kind, _, payload in _fields(buf):  # 1 bytes_list, 2 float_list, 3 int64_list
        values = []
        for _, wire, v in _fields(payload):
            if kind == 1:
                values.append(bytes(v))
            elif kind == 2:
                values += list(struct.unpack(f"<{len(v) // 4}f", v)) if wire == 2 else [struct.unpack("<f", v)[0]]
            else:
                if wire == 2:
                    p = 0
                    while p < len(v):
                        x, p = _varint(v, p)
                        values.append(x - (1 << 64) if x >= 1 << 63 else x)
                else:
                    values.append(v)
        return values
    return []


def parse_example(record: bytes) -> dict[str, list]:
    """A ``tf.train.Example`` as {feature name: list of values}."""
    out = {}
    for _, _, features in _fields(record):  # Example.features
        for _, _, entry in _fields(features):  # map<string, Feature> entries
            key = value = None
            for number, _, v in _fields(entry):
                if number == 1:
                    key = bytes(v).decode("utf-8")
                else:
                    value = _feature(v)
            out[key] = value if value is not None else []
    return out
