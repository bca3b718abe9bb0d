"""Readers, one per native dataset layout. Each returns a :class:`~cvpipe.data.manifest.ReadResult`."""

from __future__ import annotations

from collections.abc import Callable

from cvpipe.data.manifest import ReadResult


def reader_for(source: str) -> Callable[..., ReadResult]:
    """The reader function for a source layout name."""
    from cvpipe.sources import coco, dsb2018, fruits360, simpsons, voc

    readers = {
        "coco": coco.read,
        "fruits360": fruits360.read,
        "simpsons": simpsons.read,
        "dsb2018": dsb2018.read,
        "voc": voc.read,
    }
    try:
        return readers[source]
    except KeyError:
        raise ValueError(f"unknown source {source!r}; choose one of {sorted(readers)}") from None


SOURCES = ("coco", "fruits360", "simpsons", "dsb2018", "voc")
