"""The detection targets: a detection set (from a manifest or a source's own files) to YOLO or TFRecords."""

from __future__ import annotations

from cvpipe.convert import ConvertJob
from cvpipe.convert.dataset import DetectionSet, assign_splits, from_manifest, from_read, no_gc, to_coco80
from cvpipe.core.errors import UsageError
from cvpipe.sources import ReadOptions, Source


def to_yolo(source: Source, job: ConvertJob) -> dict:
    """YOLO labels and image links (``cvpipe.convert.yolo``)."""
    from cvpipe.convert.yolo import write_yolo

    with no_gc():  # many small objects and no cycles: the collector's passes are pure cost here
        dset = load(source, job, sizes=True)
        assign_splits(dset, job.val_fraction)
        return write_yolo(dset, job.out, job.drop_difficult, job.workers)


def to_tfrecord(source: Source, job: ConvertJob) -> dict:
    """TF Object Detection TFRecords (``cvpipe.convert.tfrecord``); sizes come from the bytes it reads."""
    from cvpipe.convert.tfrecord import write_tfrecords

    with no_gc():
        dset = load(source, job, sizes=False)
        assign_splits(dset, job.val_fraction)
        return write_tfrecords(dset, job.out, job.shards, job.drop_difficult, job.workers)


def load(source: Source, job: ConvertJob, sizes: bool = True) -> DetectionSet:
    """The detection set of the job's manifest, or of the source's files read by its stand-alone reader."""
    if job.manifest is not None:
        return from_manifest(job.manifest)
    if job.annotations is None or job.images is None:
        raise UsageError("give --annotations and --images, or --manifest-dir")
    if source.standalone is None:
        raise UsageError(f"source {source.name!r} has no stand-alone reader: give --manifest-dir")
    found = source.standalone(job.annotations, job.images, ReadOptions(classes_file=None if job.cls91to80 else job.classes))
    if job.cls91to80:
        found = to_coco80(found, job.annotations)
    return from_read(found, job.annotations, source.unannotated, job.workers, sizes)
