"""TFRecords in the TensorFlow Object Detection API's schema, written without TensorFlow.

Each record is a protobuf ``tf.train.Example`` (the message classes of the ``tfrecord`` package),
framed as TFRecord files are: little-endian length, masked CRC32C of the length, data, masked CRC32C
of the data; ``tf.data.TFRecordDataset`` reads them.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections import Counter
from pathlib import Path

import crc32c
from tfrecord import example_pb2

from cvpipe.classmap import ClassMap
from cvpipe.detection.dataset import SPLITS, CleanBox, DetectionSet, Item, clean_boxes, no_gc
from cvpipe.detection.output import staged_dir, write_class_files
from cvpipe.io import write_text
from cvpipe.manifest import parallel_map

FORMATS = {".jpg": b"jpeg", ".jpeg": b"jpeg", ".png": b"png"}


def label_map(classes: ClassMap) -> str:
    """``label_map.pbtxt``: ids from 1, as the Object Detection API expects (0 is background)."""
    quote = lambda s: s.replace("\\", "\\\\").replace("'", "\\'")  # noqa: E731
    return "".join(f"item {{\n  id: {c.index + 1}\n  name: '{quote(c.name)}'\n}}\n" for c in classes.classes)


def masked_crc(data: bytes) -> bytes:
    """TFRecord's masked CRC32C."""
    crc = crc32c.crc32c(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def write_record(out, record: bytes) -> None:
    """One record as it lies in a TFRecord file (written in pieces: the image is not copied again)."""
    length = struct.pack("<Q", len(record))
    out.write(length + masked_crc(length))
    out.write(record)
    out.write(masked_crc(record))


def example(item: Item, boxes: list[CleanBox], encoded: bytes) -> bytes:
    """One serialised ``tf.train.Example`` in the Object Detection API's schema."""
    w, h = item.width, item.height
    ex = example_pb2.Example()
    f = ex.features.feature
    f["image/height"].int64_list.value.append(h)
    f["image/width"].int64_list.value.append(w)
    f["image/filename"].bytes_list.value.append(item.file.name.encode("utf-8"))
    f["image/source_id"].bytes_list.value.append(item.source_id.encode("utf-8"))
    f["image/key/sha256"].bytes_list.value.append(hashlib.sha256(encoded).hexdigest().encode())
    f["image/encoded"].bytes_list.value.append(encoded)
    suffix = item.file.suffix.lower()
    f["image/format"].bytes_list.value.append(FORMATS.get(suffix, suffix.lstrip(".").encode()))
    f["image/object/bbox/xmin"].float_list.value.extend([b.x_min / w for b in boxes])
    f["image/object/bbox/xmax"].float_list.value.extend([b.x_max / w for b in boxes])
    f["image/object/bbox/ymin"].float_list.value.extend([b.y_min / h for b in boxes])
    f["image/object/bbox/ymax"].float_list.value.extend([b.y_max / h for b in boxes])
    f["image/object/class/text"].bytes_list.value.extend([b.class_name.encode("utf-8") for b in boxes])
    f["image/object/class/label"].int64_list.value.extend([b.class_index + 1 for b in boxes])
    f["image/object/difficult"].int64_list.value.extend([int(b.difficult) for b in boxes])
    f["image/object/truncated"].int64_list.value.extend([int(b.truncated) for b in boxes])
    f["image/object/view"].bytes_list.value.extend([b.pose.encode("utf-8") for b in boxes])
    return ex.SerializeToString(deterministic=True)  # map keys sorted: the same bytes every run


def shard_name(split: str, index: int, shards: int) -> str:
    return f"{split}-{index:05d}-of-{shards:05d}.record"


def write_tfrecords(dset: DetectionSet, out: Path, shards: int = 1, drop_difficult: bool = False, workers: int | None = 1) -> dict:
    """``<split>-0000k-of-0000N.record`` shards (image k goes to shard k mod N) and ``label_map.pbtxt``."""
    if shards < 1:
        raise ValueError(f"shards is {shards}; it must be at least 1")
    with no_gc():
        boxes, counts, dropped = clean_boxes(dset, drop_difficult)
    with staged_dir(out) as stage:
        splits = sorted({i.split for i in dset.items}, key=SPLITS.index)
        jobs = []
        for split in splits:
            members = [k for k, i in enumerate(dset.items) if i.split == split]
            jobs += [(split, s, members[s::shards]) for s in range(shards)]

        def write(job) -> int:
            split, s, members = job
            with open(stage / shard_name(split, s, shards), "wb") as out:
                for k in members:
                    write_record(out, example(dset.items[k], boxes[k], dset.items[k].file.read_bytes()))
            return len(members)

        written = sum(parallel_map(write, jobs, "tfrecord shards", workers, chunk=1))
        write_text(stage / "label_map.pbtxt", label_map(dset.classes))
        write_class_files(dset.classes, stage)
        report = {
            "images": dict(Counter(i.split for i in dset.items)),
            "records": written,
            "shards": shards,
            **dict(sorted((counts + dset.notes).items())),
            "dropped": dropped,
        }
        write_text(stage / "conversion.json", json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report
