"""DSB2018 submissions: ``ImageId,EncodedPixels`` CSVs (one row per instance), read strictly, scored, written.

An image without any instance has one row with an empty ``EncodedPixels``. Scoring needs no image
sizes: the IoU of two sets of flat pixel indices is the same whatever the image's height, so each
image is scored on 1-D label arrays as long as its furthest run.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvpipe.core.errors import DataError
from cvpipe.core.io import write_text
from cvpipe.data.rle import dsb_decode, dsb_encode
from cvpipe.segmentation.metrics import dsb_score, image_score

HEADER = ["ImageId", "EncodedPixels"]
MAX_PIXELS = 1 << 28  # no microscope image comes near: a run past it is a corrupt value, not a large image
_INTEGER = re.compile(r"-?[0-9]+")
_INTEGERS = re.compile(r"\s*(?:-?[0-9]+\s+)*(?:-?[0-9]+)?\s*")  # the fast check of a whole field

Instances = dict[str, list[tuple[int, np.ndarray]]]


@dataclass(frozen=True)
class SubmissionScore:
    """A submission's DSB score over the solution's images, per image, and the images it left out."""

    score: float
    images: int
    per_image: dict[str, float]
    missing: tuple[str, ...]  # solution images without a submission row: 0, or 1.0 where the truth is empty


def _pixels(path: Path, line: int, encoded: str) -> np.ndarray:
    """``start length`` pairs -> flat 0-based pixel indices, increasing; every malformed value names the line."""
    tokens = encoded.split()
    if not _INTEGERS.fullmatch(encoded):
        bad = next(v for v in tokens if not _INTEGER.fullmatch(v))
        raise DataError(path, f"EncodedPixels value {bad!r} is not an integer", line)
    if len(tokens) % 2:
        raise DataError(path, f"EncodedPixels has {len(tokens)} values, expected start length pairs", line)
    too_long = next((v for v in tokens if len(v.lstrip("-")) > 18), None)
    if too_long is not None:
        raise DataError(path, f"EncodedPixels value {too_long} is out of range", line)
    values = np.array(tokens, dtype=np.int64)
    starts, lengths = values[0::2], values[1::2]
    ends = starts + lengths  # 1 past the run's last pixel, 0-based
    wrong = np.flatnonzero((starts < 1) | (lengths < 1) | (ends - 1 > MAX_PIXELS))
    if wrong.size:
        start, length = starts[wrong[0]], lengths[wrong[0]]
        what = ("start must be >= 1 (pixels are 1-indexed)" if start < 1 else "length must be >= 1" if length < 1
                else f"the run ends past pixel {MAX_PIXELS}, larger than any image")
        raise DataError(path, f"run {start} {length}: {what}", line)
    wrong = np.flatnonzero(starts[1:] < ends[:-1])
    if wrong.size:
        k = int(wrong[0])
        raise DataError(path, f"run {starts[k + 1]} {lengths[k + 1]} starts before the previous run {starts[k]} {lengths[k]} "
                              "ends: runs must be in increasing order and must not overlap", line)
    offsets = np.repeat(starts - 1 - (np.cumsum(lengths) - lengths), lengths)
    return np.arange(int(lengths.sum()), dtype=np.int64) + offsets


def _read(path: Path) -> tuple[Instances, dict[str, int]]:
    """Instances per image, and the line each image first appears on (also for images without instances)."""
    instances: Instances = {}
    first_line: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or header[:2] != HEADER:
                raise DataError(path, f"header is {header}, expected {','.join(HEADER)} first (columns after them are ignored)", 1)
            for row in reader:
                line = reader.line_num
                if not row:  # a blank line (a trailing one, say) holds no row
                    continue
                if len(row) != len(header):
                    raise DataError(path, f"expected {len(header)} fields ({','.join(header)}), got {len(row)}", line)
                image_id, encoded = row[0], row[1]
                if not image_id:
                    raise DataError(path, "ImageId is empty", line)
                rows = instances.setdefault(image_id, [])
                first_line.setdefault(image_id, line)
                if encoded.strip():
                    rows.append((line, _pixels(path, line, encoded)))
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"not a readable UTF-8 CSV: {exc}") from None
    return instances, first_line


def read_rle_csv(path: Path) -> Instances:
    """Image id -> [(line number, flat 0-based pixel indices)] per instance row; an empty row registers the image."""
    return _read(Path(path))[0]


def _labels(path: Path, image_id: str, rows: list[tuple[int, np.ndarray]], length: int) -> np.ndarray:
    """Flat label array (row k of the image = label k); instances sharing a pixel name both lines."""
    labels = np.zeros(length, dtype=np.int64)
    for k, (line, pixels) in enumerate(rows, start=1):
        taken = labels[pixels]
        if taken.any():
            other = rows[int(taken[taken > 0][0]) - 1][0]
            raise DataError(path, f"ImageId {image_id}: this instance overlaps the instance on line {other} "
                                  "(instances of one image must not share pixels)", line)
        labels[pixels] = k
    return labels


def score_submission(truth_csv: Path, submission_csv: Path) -> SubmissionScore:
    """Kaggle's DSB2018 score of a submission CSV against the solution CSV (extra solution columns ignored)."""
    truth_csv, submission_csv = Path(truth_csv), Path(submission_csv)
    truth, _ = _read(truth_csv)
    if not truth:
        raise DataError(truth_csv, "no image rows: nothing to score against")
    submitted, first_line = _read(submission_csv)
    for image_id, line in first_line.items():
        if image_id not in truth:
            raise DataError(submission_csv, f"ImageId {image_id} is not in the solution {truth_csv}", line)
    scores = {}
    for image_id in sorted(truth):
        true_rows, pred_rows = truth[image_id], submitted.get(image_id, [])
        length = max((int(pixels[-1]) + 1 for _, pixels in true_rows + pred_rows), default=0)
        scores[image_id] = image_score(_labels(truth_csv, image_id, true_rows, length),
                                       _labels(submission_csv, image_id, pred_rows, length))
    return SubmissionScore(
        score=dsb_score(scores.values()),
        images=len(scores),
        per_image={image_id: s.score for image_id, s in scores.items()},
        missing=tuple(image_id for image_id in sorted(truth) if image_id not in submitted),
    )


def write_submission(path: Path, instances: dict[str, np.ndarray]) -> int:
    """Image id -> labelled 2-D array -> submission CSV, sorted by image id then label; returns the instance rows.

    The text is decoded back row by row and compared with the masks before it is written (atomically):
    a mismatch is a bug in the encoder, a RuntimeError, and leaves no file.
    """
    expected: list[tuple[str, np.ndarray, int | None]] = []  # (image, labels, label or None for an empty row)
    for image_id in sorted(instances):
        labels = np.asarray(instances[image_id])
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
            raise ValueError(f"{image_id}: expected a 2-D array of labels >= 0 (0 = background), got {labels.dtype} {labels.shape}")
        present = [int(v) for v in np.unique(labels) if v != 0]
        expected += [(image_id, labels, v) for v in present] or [(image_id, labels, None)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows((image_id, dsb_encode(_mask(labels, v))) for image_id, labels, v in expected)
    text = buffer.getvalue()
    _check_written(text, expected)
    write_text(path, text)
    return sum(v is not None for _, _, v in expected)


def _mask(labels: np.ndarray, label: int | None) -> np.ndarray:
    return labels == label if label is not None else np.zeros(labels.shape, dtype=bool)


def _check_written(text: str, expected: list[tuple[str, np.ndarray, int | None]]) -> None:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if rows[0] != HEADER or len(rows) - 1 != len(expected):
        raise RuntimeError(f"submission text has {len(rows) - 1} rows under {rows[0]}, expected {len(expected)}")
    for line, (row, (image_id, labels, v)) in enumerate(zip(rows[1:], expected, strict=True), start=2):
        if row[0] != image_id or not np.array_equal(dsb_decode(row[1], *labels.shape).astype(bool), _mask(labels, v)):
            raise RuntimeError(f"submission line {line} does not decode to label {v} of {image_id}: the encoder is wrong")
