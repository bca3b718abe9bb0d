"""DSB2018 submission CSVs: strict reading, scoring without image sizes, verified writing."""

import re

import numpy as np
import pytest
from PIL import Image

from cvpipe.core.errors import DataError
from cvpipe.data.rle import dsb_encode
from cvpipe.segmentation import submission
from cvpipe.segmentation.submission import read_rle_csv, score_submission, write_submission


def csv_file(path, *rows, header="ImageId,EncodedPixels"):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def labelled_images():
    a = np.zeros((6, 5), dtype=np.int32)
    a[0:2, 0:2], a[3:6, 1:4], a[5, 4] = 9, 4, 30  # non-consecutive labels, one a single pixel
    b = np.zeros((4, 7), dtype=np.uint8)
    b[1:3, 2:7] = 1
    return {"img-b": b, "img-a": a, "img-empty": np.zeros((3, 3), dtype=np.int64)}


def test_write_submission_round_trips_through_the_file(tmp_path):
    images = labelled_images()
    out = tmp_path / "submission.csv"
    assert write_submission(out, images) == 4
    text = out.read_bytes().decode()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert lines[0] == "ImageId,EncodedPixels" and lines[-1] == "img-empty,"  # one empty row, sorted last
    assert [line.split(",")[0] for line in lines[1:]] == ["img-a"] * 3 + ["img-b", "img-empty"]
    read = read_rle_csv(out)
    assert list(read) == ["img-a", "img-b", "img-empty"] and read["img-empty"] == []
    for image_id, labels in images.items():
        expected = [np.flatnonzero((labels == v).ravel(order="F")) for v in np.unique(labels) if v]  # labels 4, 9, 30
        assert [pixels.tolist() for _, pixels in read[image_id]] == [e.tolist() for e in expected]
    assert [line for line, _ in read["img-a"]] == [2, 3, 4]


def test_a_written_submission_scores_one_against_itself(tmp_path):
    out = tmp_path / "submission.csv"
    write_submission(out, labelled_images())
    result = score_submission(out, out)
    assert result.score == 1.0 and result.images == 3 and result.missing == ()
    assert result.per_image == {"img-a": 1.0, "img-b": 1.0, "img-empty": 1.0}


def test_write_submission_checks_what_it_encoded(tmp_path, monkeypatch):
    monkeypatch.setattr(submission, "dsb_encode", lambda mask: dsb_encode(np.roll(mask, 1)))  # an encoder bug
    with pytest.raises(RuntimeError, match="does not decode"):
        write_submission(tmp_path / "s.csv", labelled_images())
    assert not (tmp_path / "s.csv").exists()


def test_write_submission_rejects_what_is_not_a_2d_label_image(tmp_path):
    with pytest.raises(ValueError, match="2-D"):
        write_submission(tmp_path / "s.csv", {"x": np.zeros((2, 2, 2), dtype=int)})


def test_score_of_hand_made_csvs(tmp_path):
    truth = csv_file(tmp_path / "solution.csv",
                     "a,1 4 10 3,256,256,Public", "a,20 5,256,256,Public",  # two nuclei
                     "b,1 10,256,256,Private",  # one nucleus of 10 pixels
                     "c,1 2,256,256,Public",  # not submitted: missing, 0
                     "e,,256,256,Public",  # no nucleus, not submitted: missing, 1.0
                     header="ImageId,EncodedPixels,Height,Width,Usage")
    sub = csv_file(tmp_path / "sub.csv",
                   "a,1 4 10 3",  # the first nucleus exactly, the second missed: 0.5
                   "b,2 7")  # IoU 7 / 10 = 0.7 exactly: matched at 0.50-0.65 only, 4 / 10
    result = score_submission(truth, sub)
    assert result.per_image == {"a": 0.5, "b": pytest.approx(0.4, abs=1e-15), "c": 0.0, "e": 1.0}
    assert result.score == pytest.approx((0.5 + 0.4 + 0 + 1) / 4, abs=1e-15)
    assert result.images == 4 and result.missing == ("c", "e")


def test_empty_submission_row_scores_an_image_without_nuclei_one(tmp_path):
    truth = csv_file(tmp_path / "solution.csv", "a,", "b,3 2")
    sub = csv_file(tmp_path / "sub.csv", "a,", "b,")
    result = score_submission(truth, sub)
    assert result.per_image == {"a": 1.0, "b": 0.0} and result.missing == ()


@pytest.mark.parametrize(("row", "message"), [
    ("a,1 2,extra", "expected 2 fields"),
    ("a,1 x", "EncodedPixels value 'x' is not an integer"),
    ("a,1.5 2", "EncodedPixels value '1.5' is not an integer"),
    ("a,1 2 3", "EncodedPixels has 3 values, expected start length pairs"),
    ("a,0 2", "run 0 2: start must be >= 1"),
    ("a,1 0", "run 1 0: length must be >= 1"),
    ("a,5 2 1 2", "run 1 2 starts before the previous run 5 2 ends"),
    ("a,1 5 3 2", "run 3 2 starts before the previous run 1 5 ends"),
    (",1 2", "ImageId is empty"),
])
def test_malformed_rows_name_file_and_line(tmp_path, row, message):
    bad = csv_file(tmp_path / "bad.csv", "a,1 2", row)
    with pytest.raises(DataError, match=re.escape(f"bad.csv:3: {message}")):
        read_rle_csv(bad)


def test_adjacent_runs_and_a_byte_order_mark_are_valid(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text("\ufeffImageId,EncodedPixels\r\na,1 2 3 2\r\n")  # Excel's BOM and line endings
    assert [(line, pixels.tolist()) for line, pixels in read_rle_csv(path)["a"]] == [(2, [0, 1, 2, 3])]


def test_bad_header_and_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"bad.csv:1: header is \['ImageId', 'Pixels'\]"):
        read_rle_csv(csv_file(tmp_path / "bad.csv", "a,1 2", header="ImageId,Pixels"))
    with pytest.raises(DataError, match=r"nowhere.csv: file not found"):
        read_rle_csv(tmp_path / "nowhere.csv")


def test_overlapping_submission_rows_name_both_lines(tmp_path):
    truth = csv_file(tmp_path / "solution.csv", "a,1 5")
    sub = csv_file(tmp_path / "sub.csv", "a,1 5", "a,9 2", "a,4 3")
    with pytest.raises(DataError, match=r"sub.csv:4: ImageId a: this instance overlaps the instance on line 2"):
        score_submission(truth, sub)


def test_overlapping_truth_rows_name_the_solution(tmp_path):
    truth = csv_file(tmp_path / "solution.csv", "a,1 5", "a,3 1")
    sub = csv_file(tmp_path / "sub.csv", "a,1 5")
    with pytest.raises(DataError, match=r"solution.csv:3: .*overlaps the instance on line 2"):
        score_submission(truth, sub)


@pytest.mark.parametrize("row", ["zz,1 2", "zz,"])
def test_unknown_image_is_named_by_line(tmp_path, row):
    truth = csv_file(tmp_path / "solution.csv", "a,1 5")
    sub = csv_file(tmp_path / "sub.csv", "a,1 5", row)
    with pytest.raises(DataError, match=r"sub.csv:3: ImageId zz is not in the solution"):
        score_submission(truth, sub)


def test_kaggle_encodings_score_one_against_a_submission_written_from_the_mask_files(realdata, tmp_path):
    """Our writer and reader agree with Kaggle's official run-length encodings of the same nuclei."""
    root = realdata / "dsb2018_nuclei"
    official = root / "stage1_train_labels.excerpt.csv"
    images = {}
    for image_id in read_rle_csv(official):
        masks = sorted((root / "stage1_train" / image_id / "masks").glob("*.png"))
        labels = np.zeros(np.asarray(Image.open(masks[0])).shape, dtype=np.int32)
        for k, m in enumerate(masks, start=1):
            labels[np.asarray(Image.open(m)) > 0] = k
        images[image_id] = labels
    assert write_submission(tmp_path / "ours.csv", images) == 63
    result = score_submission(official, tmp_path / "ours.csv")
    assert result.score == 1.0 and result.images == 2 and result.missing == ()
    first = sorted(images)[0]
    images[first][images[first] == 1] = 0  # drop one of its 27 nuclei: TP 26, FN 1 at every threshold
    write_submission(tmp_path / "ours.csv", images)
    assert score_submission(official, tmp_path / "ours.csv").per_image[first] == pytest.approx(26 / 27, abs=1e-15)
