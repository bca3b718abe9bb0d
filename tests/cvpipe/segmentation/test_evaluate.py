"""Nuclei evaluation reports, and `python -m stages.evaluate dsb-score` on submission files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cvpipe.segmentation.evaluate import MISSED, Settings, overlay, score_image, summary, write_report
from stages import evaluate


def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rgb = np.zeros((20, 30, 3), dtype=np.uint8)
    truth = np.zeros((20, 30), dtype=np.int32)
    truth[2:8, 2:8], truth[10:16, 10:16], truth[2:8, 20:26] = 1, 2, 3
    pred = np.zeros_like(truth)
    pred[2:8, 2:8], pred[12:18, 20:28] = 5, 6  # nucleus 1 found, a false one, 2 and 3 missed
    return rgb, truth, pred


def test_overlay_colours_matched_false_and_missed_nuclei():
    rgb, truth, pred = scene()
    scored = score_image("a", "a.png", rgb, truth, pred)
    out = overlay(rgb, truth, pred, scored.score)
    assert out[4, 4, 1] > out[4, 4, 0]  # matched: green
    assert out[14, 23, 0] > out[14, 23, 1]  # false: red
    assert tuple(out[10, 12]) == MISSED and tuple(out[12, 12]) == (0, 0, 0)  # missed: outlined, inside untouched


def test_summary_and_reports(tmp_path):
    rgb, truth, pred = scene()
    pink = np.full_like(rgb, 220)
    scored = [score_image("a", "a.png", rgb, truth, pred), score_image("b", "b.png", pink, truth, truth)]
    metrics = write_report(tmp_path, scored, {s.image_id: (rgb, rgb) for s in scored}, "t", "holdout", 1)
    assert metrics["dsb_score_by_type"] == {"brightfield": 1.0, "fluorescence": pytest.approx(1 / 4)}
    assert metrics["dsb_score"] == pytest.approx((1 + 0.25) / 2) and metrics["nuclei"] == 6 and metrics["predicted"] == 5
    assert metrics["recall50"] == pytest.approx(4 / 6) and metrics["precision50"] == pytest.approx(4 / 5)
    rows = (tmp_path / "per_image.csv").read_text().splitlines()
    assert rows[0].startswith("image_id,type,nuclei,predicted,dsb_score") and rows[1].startswith("a,fluorescence,3,2,0.25")
    thresholds = (tmp_path / "thresholds.csv").read_text().splitlines()
    assert len(thresholds) == 11 and thresholds[1] == "0.5,0.625"
    assert (tmp_path / "worst.png").read_bytes()[:4] == b"\x89PNG"
    assert json.dumps(summary(scored, "x"))  # plain JSON


def test_bad_evaluate_settings_name_the_key():
    from cvpipe.core.errors import ParamsError

    with pytest.raises(ParamsError, match=r"instances\.min_area"):
        Settings.from_params({"instances": {"min_area": -3}})
    with pytest.raises(ParamsError, match="gallery"):
        Settings.from_params({"gallery": "all"})


def test_dsb_score_command_scores_a_submission_and_names_a_malformed_line(tmp_path, capsys):
    truth = tmp_path / "solution.csv"
    truth.write_text("ImageId,EncodedPixels,Height,Width\na,1 4,4,4\na,9 4,4,4\nb,5 3,4,4\n")
    good = tmp_path / "good.csv"
    good.write_text("ImageId,EncodedPixels\na,1 4\n\na,9 4\nb,5 3\n\n")  # blank lines hold no row
    assert evaluate.main(["dsb-score", "--truth", str(truth), "--submission", str(good), "--per-image", str(tmp_path / "p.csv")]) == 0
    assert "dsb-score: 1.000000 over 2 images" in capsys.readouterr().out
    assert (tmp_path / "p.csv").read_text() == "ImageId,score\na,1.000000\nb,1.000000\n"
    half = tmp_path / "half.csv"
    half.write_text("ImageId,EncodedPixels\na,1 4\n")
    assert evaluate.main(["dsb-score", "--truth", str(truth), "--submission", str(half)]) == 0
    assert "0.250000 over 2 images; 1 without any row" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("ImageId,EncodedPixels\na,1 4\na,9 x\n")
    assert evaluate.main(["dsb-score", "--truth", str(truth), "--submission", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad}:3: ")


def test_a_holdout_without_nuclei_leaves_the_dsb_score_undefined():
    rgb, truth, _ = scene()
    empty = np.zeros_like(truth)
    metrics = summary([score_image("a", "a.png", rgb, empty, empty), score_image("b", "b.png", rgb, empty, truth)], "holdout")
    assert metrics["dsb_score"] is None and metrics["nuclei"] == 0
    assert metrics["undefined"].startswith("the holdout split holds no nucleus (2 images)")
    rgb, truth, pred = scene()
    assert "undefined" not in summary([score_image("a", "a.png", rgb, truth, pred)], "holdout")  # one nucleus defines it
