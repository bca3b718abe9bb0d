"""The marker segments of a JPEG file, walked from its first bytes (image sizes, EXIF orientation)."""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator

RESTARTS = frozenset(range(0xD0, 0xD8))  # RSTn: markers without a length


def segments(data: bytes, standalone: Container[int], more: Callable[[], bytes] | None = None
             ) -> Iterator[tuple[int, int, int, bytes]]:
    """(marker, position, length field, the bytes read so far) of each segment after SOI, fill bytes and the
    ``standalone`` markers (no length) passed over; ends at a byte that is no marker. ``more`` gives the next
    bytes (``b""`` at the end); EOFError where the bytes end before the next marker's length."""
    pos = 2
    while True:
        while pos + 4 > len(data):
            chunk = more() if more is not None else b""
            if not chunk:
                raise EOFError
            data += chunk
        if data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in standalone:
            pos += 2
            continue
        yield marker, pos, data[pos + 2] << 8 | data[pos + 3], data
        pos += 2 + (data[pos + 2] << 8 | data[pos + 3])
