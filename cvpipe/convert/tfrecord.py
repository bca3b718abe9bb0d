"""TFRecords in the TensorFlow Object Detection API's schema, written without TensorFlow.

Each record is a protobuf ``tf.train.Example`` (the message classes of the ``tfrecord`` package),
framed as TFRecord files are: little-endian length, masked CRC32C of the length, data, masked CRC32C
of the data; ``tf.data.TFRecordDataset`` reads them.

The image bytes are the bulk of every record, so they never pass through the protobuf message:
protobuf serialises the other features, and the ``image/encoded`` map entry is framed around the
file's bytes as they were read (three length-delimited headers), where deterministic serialisation
puts it (map keys sorted: ``image/encoded`` first). ``reference_example`` builds the whole record
with protobuf alone; the tests hold the two byte-identical. The other features are refilled, image
after image, into one message per thread whose map entries are made once (looking entries up in
protobuf's map was half the cost). Packing the small features by hand in Python was measured too:
2.7x slower than protobuf's C serialiser. Shards are written on parallel threads: reading, SHA-256
and writing release the GIL. Image sizes come from the bytes read for ``image/encoded``.

A JPEG's EXIF orientation other than 1 is set to 1 in the embedded bytes (``cvpipe.data.exif``; two bytes
patched, the file itself untouched): boxes refer to the stored pixels, and a reader that honours the
tag would show them turned. ``image/key/sha256`` is the hash of the bytes embedded.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import struct
import threading
from collections import Counter
from pathlib import Path

import crc32c
from tfrecord import example_pb2

from cvpipe.convert.dataset import SPLITS, BoxCleaner, CleanBox, DetectionSet, Item, no_gc, size_error
from cvpipe.convert.output import write_class_files
from cvpipe.core.errors import DataError, ParamsError
from cvpipe.core.io import read_file, staged_dir, write_text
from cvpipe.data.classmap import ClassMap
from cvpipe.data.exif import upright_tag
from cvpipe.data.imagesize import image_size_of
from cvpipe.data.manifest import WorkPool, parallel_map

FORMATS = {".jpg": b"jpeg", ".jpeg": b"jpeg", ".png": b"png"}


def label_map(classes: ClassMap) -> str:
    """``label_map.pbtxt``: ids from 1, as the Object Detection API expects (0 is background)."""
    return "".join(f"item {{\n  id: {c.index + 1}\n  name: '{pbtxt_escape(c.name)}'\n}}\n" for c in classes.classes)


def pbtxt_escape(text: str) -> str:
    """A string for a single-quoted protobuf text-format literal: backslash, quotes and control
    characters escaped (the data gate refuses such class names; a converter run on its own still
    writes a label map that parses)."""
    out = []
    for ch in text:
        if ch in "\\'\"":
            out.append("\\" + ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return "".join(out)


def masked_crc(data: bytes) -> bytes:
    """TFRecord's masked CRC32C."""
    return _mask(crc32c.crc32c(data))


def write_record(out, *parts: bytes) -> None:
    """One record, given as consecutive pieces, as it lies in a TFRecord file (pieces are not joined)."""
    length = struct.pack("<Q", sum(map(len, parts)))
    crc = 0
    for part in parts:
        crc = crc32c.crc32c(part, crc)
    out.write(length + masked_crc(length))
    for part in parts:
        out.write(part)
    out.write(_mask(crc))


def _mask(crc: int) -> bytes:
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _delimited(tag: int, length: int) -> bytes:
    """Key and length of a length-delimited field (wire type 2) whose payload has ``length`` bytes."""
    return bytes([tag << 3 | 2]) + _varint(length)


ENCODED_KEY = _delimited(1, 13) + b"image/encoded"


def _encoded_head(size: int) -> bytes:
    """Everything of the ``image/encoded`` map entry that precedes the image's bytes."""
    bytes_list = _delimited(1, size)  # BytesList.value
    feature = _delimited(1, len(bytes_list) + size)  # Feature.bytes_list
    entry = ENCODED_KEY + _delimited(2, len(feature) + len(bytes_list) + size)  # entry.key, entry.value
    return _delimited(1, len(entry) + len(feature) + len(bytes_list) + size) + entry + feature + bytes_list


def example_parts(item: Item, boxes: list[CleanBox], encoded: bytes) -> tuple[bytes, bytes, bytes]:
    """The serialised Example as (head, image bytes, tail): protobuf for all but ``image/encoded``."""
    rest = _template().serialize(item, boxes, hashlib.sha256(encoded).hexdigest().encode())
    head = _encoded_head(len(encoded))
    # Example.features holds the map entries; the image's entry sorts first among the keys
    return _delimited(1, len(head) + len(encoded) + len(rest)) + head, encoded, rest


def example(item: Item, boxes: list[CleanBox], encoded: bytes) -> bytes:
    """One serialised ``tf.train.Example`` in the Object Detection API's schema."""
    return b"".join(example_parts(item, boxes, encoded))


def reference_example(item: Item, boxes: list[CleanBox], encoded: bytes) -> bytes:
    """The same Example built afresh and serialised by protobuf alone (slower: the image is copied
    in and out, and every map entry is created again)."""
    features = _features(item, boxes, hashlib.sha256(encoded).hexdigest().encode())
    features.feature["image/encoded"].bytes_list.value.append(encoded)
    ex = example_pb2.Example()
    ex.features.CopyFrom(features)
    return ex.SerializeToString(deterministic=True)


def _features(item: Item, boxes: list[CleanBox], sha256: bytes) -> example_pb2.Features:
    """Every feature but ``image/encoded``, in a new message."""
    features = example_pb2.Features()
    for key, value in _values(item, boxes, sha256).items():
        getattr(features.feature[key], _KINDS[key]).value.extend(value)
    return features  # serialised with deterministic=True: map keys sorted, the same bytes every run


_KINDS = {
    "image/height": "int64_list", "image/width": "int64_list", "image/filename": "bytes_list",
    "image/source_id": "bytes_list", "image/key/sha256": "bytes_list", "image/format": "bytes_list",
    "image/object/bbox/xmin": "float_list", "image/object/bbox/xmax": "float_list",
    "image/object/bbox/ymin": "float_list", "image/object/bbox/ymax": "float_list",
    "image/object/class/text": "bytes_list", "image/object/class/label": "int64_list",
    "image/object/difficult": "int64_list", "image/object/truncated": "int64_list", "image/object/view": "bytes_list",
}  # fmt: skip


def _values(item: Item, boxes: list[CleanBox], sha256: bytes) -> dict[str, list]:
    w, h = item.width, item.height
    suffix = os.path.splitext(item.file.name)[1].lower()
    return {
        "image/height": [h],
        "image/width": [w],
        "image/filename": [item.file.name.encode("utf-8")],
        "image/source_id": [item.source_id.encode("utf-8")],
        "image/key/sha256": [sha256],
        "image/format": [FORMATS.get(suffix, suffix.lstrip(".").encode())],
        "image/object/bbox/xmin": [b.x_min / w for b in boxes],
        "image/object/bbox/xmax": [b.x_max / w for b in boxes],
        "image/object/bbox/ymin": [b.y_min / h for b in boxes],
        "image/object/bbox/ymax": [b.y_max / h for b in boxes],
        "image/object/class/text": [b.class_name.encode("utf-8") for b in boxes],
        "image/object/class/label": [b.class_index + 1 for b in boxes],
        "image/object/difficult": [int(b.difficult) for b in boxes],
        "image/object/truncated": [int(b.truncated) for b in boxes],
        "image/object/view": [b.pose.encode("utf-8") for b in boxes],
    }


class _Template:
    """One ``Features`` message with every map entry made once; each image replaces the values.

    Looking entries up in protobuf's map is most of the cost of building the message afresh; held
    references to the value lists make it about half. A template belongs to one thread.
    """

    def __init__(self) -> None:
        self.message = example_pb2.Features()
        self.lists = [(key, getattr(self.message.feature[key], kind).value) for key, kind in _KINDS.items()]

    def serialize(self, item: Item, boxes: list[CleanBox], sha256: bytes) -> bytes:
        values = _values(item, boxes, sha256)
        for key, held in self.lists:
            held[:] = values[key]
        return self.message.SerializeToString(deterministic=True)


_local = threading.local()


def _template() -> _Template:
    template = getattr(_local, "template", None)
    if template is None:
        template = _local.template = _Template()
    return template


def shard_name(split: str, index: int, shards: int) -> str:
    return f"{split}-{index:05d}-of-{shards:05d}.record"


def write_tfrecords(dset: DetectionSet, out: Path, shards: int = 1, drop_difficult: bool = False,
                    workers: int | WorkPool | None = None) -> dict:
    """``<split>-0000k-of-0000N.record`` shards (image k goes to shard k mod N) and ``label_map.pbtxt``.

    Shards are written in parallel, one a thread, as many at once as there are cores (or one a Dask
    task, where ``workers`` is a pool that takes a set this large; a thread count is not used). Items whose size is not known yet
    (width 0) take it from the image's bytes, which are read here anyway.
    """
    if shards < 1:
        raise ParamsError("convert.shards", f"is {shards!r}; it must be at least 1")
    dropped_by_item: list[list[dict]] = [[] for _ in dset.items]
    reset = [False] * len(dset.items)
    with staged_dir(out) as stage:
        splits = sorted({i.split for i in dset.items}, key=SPLITS.index)
        members, jobs = [], []
        for split in splits:
            in_split = [k for k, i in enumerate(dset.items) if i.split == split]
            for s in range(shards):
                members.append(in_split[s::shards])
                jobs.append((str(stage / shard_name(split, s, shards)), [dset.items[k] for k in members[-1]]))

        write = functools.partial(_write_shard, names=dset.classes.names, drop_difficult=drop_difficult)
        threads = min(len(jobs), os.cpu_count() or 1)  # one shard per thread, whatever ``workers`` says
        pooled = isinstance(workers, WorkPool) and workers.takes(len(dset.items))
        with no_gc():
            written = list(parallel_map(write, jobs, "tfrecord shards", workers if pooled else threads, chunk=1,
                                        images=len(dset.items)))
        for ks, (_, resets, dropped) in zip(members, written, strict=True):
            for k, was_reset, lost in zip(ks, resets, dropped, strict=True):
                reset[k], dropped_by_item[k] = was_reset, lost
        cleaners = [cleaner for cleaner, _, _ in written]
        write_text(stage / "label_map.pbtxt", label_map(dset.classes))
        write_class_files(dset.classes, stage)
        report = {
            "images": dict(Counter(i.split for i in dset.items)),
            "records": len(dset.items),
            "shards": shards,
            **dict(sorted((sum((c.counts() for c in cleaners), Counter()) + dset.notes
                           + Counter(orientation_reset=sum(reset))).items())),  # a zero count is left out
            "dropped": [d for lost in dropped_by_item for d in lost],
        }
        write_text(stage / "conversion.json", json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def _write_shard(job: tuple[str, list[Item]], names: list[str], drop_difficult: bool
                 ) -> tuple[BoxCleaner, list[bool], list[list[dict]]]:
    """One shard file; its cleaner (counts), and per item whether its orientation was reset and what was dropped."""
    path, items = job
    cleaner = BoxCleaner(names, drop_difficult)
    resets, dropped = [], []
    with open(path, "wb") as shard:
        for item in items:
            read = _read_image(item)
            encoded = upright_tag(read)
            resets.append(encoded is not read)
            boxes, lost = cleaner.clean(item)
            dropped.append(lost)
            write_record(shard, *example_parts(item, boxes, encoded))
    return cleaner, resets, dropped


def _read_image(item: Item) -> bytes:
    """The image's bytes; sets the item's size from them when it is not known yet."""
    try:
        encoded = read_file(item.file)
        if not item.width:
            item.width, item.height = image_size_of(encoded)
    except Exception as exc:  # any decoder error, reported with the file's name
        raise DataError(item.file, size_error(exc)) from exc
    return encoded
