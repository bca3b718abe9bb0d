"""JPEG marker segments: fill bytes and markers without a length passed over, more bytes read on demand."""

from __future__ import annotations

import pytest

from cvpipe.data.jpeg import RESTARTS, segments

# SOI, APP0 (length 4), a fill byte, RST0, COM (length 3), then a byte that is no marker
DATA = b"\xff\xd8" + b"\xff\xe0\x00\x04ab" + b"\xff" + b"\xff\xd0" + b"\xff\xfe\x00\x03c" + b"\x00rest"


def test_segments_name_each_marker_its_position_and_length():
    assert [(m, pos, length) for m, pos, length, _ in segments(DATA, RESTARTS)] == [(0xE0, 2, 4), (0xFE, 11, 3)]


def test_without_the_restart_markers_as_standalone_rst0_is_read_as_a_segment():
    walk = segments(DATA, set())
    assert [next(walk)[0], next(walk)[:3]] == [0xE0, (0xD0, 9, 0xFFFE)]  # its "length" is the next marker's bytes
    with pytest.raises(EOFError):
        next(walk)


def test_more_bytes_are_read_as_the_walk_needs_them_and_the_end_is_an_eoferror():
    chunks = [DATA[k : k + 3] for k in range(6, len(DATA), 3)]
    found = [(m, data) for m, _, _, data in segments(DATA[:6], RESTARTS, lambda: chunks.pop(0) if chunks else b"")]
    assert [m for m, _ in found] == [0xE0, 0xFE] and found[-1][1].startswith(DATA[:14])
    with pytest.raises(EOFError):
        list(segments(DATA[:12], RESTARTS))
