"""The end of ``make run``: one short line per registered model, read from what the register stages wrote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cvpipe.report.summary import WIDTH, ModelLine, table
from stages import summary
from tests.conftest import write_image

REPO = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path) -> Path:
    """A project with the repository's own pipeline map and parameters, and nothing run yet."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copyfile(REPO / name, tmp_path / name)
    return tmp_path


def _gate(root: Path, dataset: str, images: int, quarantined: int = 0, blocking: int = 0, warnings: int = 0) -> None:
    (root / "reports/validate").mkdir(parents=True, exist_ok=True)
    (root / "reports/validate" / f"{dataset}.json").write_text(json.dumps(
        {"dataset": dataset, "images": images, "kept_images": images - quarantined, "quarantined_images": quarantined,
         "blocking_failures": blocking, "warnings": warnings, "passed": int(not blocking)}))


def _registered(root: Path, dataset: str, images: int, **reg) -> None:
    (root / "reports/register").mkdir(parents=True, exist_ok=True)
    (root / "reports/register" / f"{dataset}.json").write_text(json.dumps(reg))
    (root / "reports/evaluate" / dataset).mkdir(parents=True, exist_ok=True)
    (root / "reports/evaluate" / dataset / "metrics.json").write_text(json.dumps({"images": images, reg["metric"]: reg["score"]}))


def finished_project(tmp_path: Path) -> Path:
    """A project where fruits360 went all the way (two pictures) and coco's gate quarantined an image."""
    root = _project(tmp_path)
    _gate(root, "fruits360", 300)
    (root / "reports/validate/fruits360").mkdir(parents=True)
    (root / "reports/validate/fruits360/summary.json").write_text(json.dumps({
        "dataset": "fruits360", "images": 300, "blocking_failures": 0, "warnings": 1, "quarantined_images": 0, "passed": 1,
        "checks": [{"check": "images.decode", "table": "images", "passed": True, "blocking": True, "unexpected_count": 0,
                    "expectation": "expect_column_values_to_be_null(decode_error)", "examples": []},
                   {"check": "classes.balance", "table": "classes", "passed": False, "blocking": False, "unexpected_count": 2,
                    "expectation": "expect_column_values_to_be_between(share)", "examples": ["Kiwi", "Lemon"]}]}))
    _registered(root, "fruits360", 60, model_name="fruits360-classifier", version="2", alias="challenger", promoted=False,
                metric="macro_f1", score=0.875, champion_version="1", champion_score=0.9, reason="0.8750 < 0.9000 - 0.0")
    metrics = root / "reports/evaluate/fruits360/metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "accuracy": 0.9, "undefined": {"x": "y"}}))
    write_image(root / "reports/evaluate/fruits360/confusion.png", fmt="PNG")
    write_image(root / "reports/evaluate/fruits360/gradcam.png", fmt="PNG")
    (root / "data/validated/coco").mkdir(parents=True)
    (root / "data/validated/coco/quarantine.csv").write_text("file,image,expectation,reason\na/b.jpg,a/b.jpg,images.decode,cannot decode\n")
    _gate(root, "coco", 300, quarantined=1)
    return root


def test_one_line_per_dataset_none_wider_than_the_terminal(tmp_path):
    root = _project(tmp_path)
    _gate(root, "fruits360", 300, warnings=1)
    _registered(root, "fruits360", 60, model_name="fruits360-classifier", version="3", alias="champion", promoted=True,
                metric="macro_f1", score=0.98765, champion_version=None, champion_score=None)
    _gate(root, "underground", 480, quarantined=2)
    _registered(root, "underground", 96, model_name="underground-detector", version="12", alias="challenger", promoted=False,
                metric="map50_95", score=0.41, champion_version="7", champion_score=0.5321)
    _gate(root, "coco", 300, blocking=3)

    lines = summary.run(root)

    assert all(len(line) <= WIDTH for line in lines), [len(line) for line in lines]
    assert not any(line.endswith("…") for line in lines)  # nothing had to be clipped
    rows = {line.split()[0]: line for line in lines if line.startswith("  ") and not line.startswith("   ")}
    # a header, then every register stage of dvc.yaml has its line, in the pipeline's order
    assert list(rows) == ["dataset", "fruits360", "simpsons", "coco", "underground", "dsb2018"]
    fruits, under = rows["fruits360"].split(), rows["underground"].split()
    # the task and the gate come from the validate stage that wrote the register stage's manifest
    assert fruits[:3] == ["fruits360", "classification", "60"] and under[:3] == ["underground", "detection", "96"]
    assert "passed, 1 warn" in rows["fruits360"] and "2 quarantined" in rows["underground"]
    assert "macro_f1 0.9877" in rows["fruits360"] and rows["fruits360"].endswith("v3 @champion (promoted)")
    assert "map50_95 0.4100" in rows["underground"] and rows["underground"].endswith("v12 @challenger (v7: 0.5321)")
    assert "FAILED (3)" in rows["coco"] and rows["coco"].endswith("not registered")
    assert rows["simpsons"].split()[1:] == ["classification", "-", "not", "run", "-", "not", "registered", "yet"]
    assert rows["dsb2018"].split()[1] == "segmentation"
    # the columns line up under the header
    gate_col = rows["dataset"].index("gate")
    assert rows["fruits360"][gate_col:].startswith("passed") and rows["underground"][gate_col:].startswith("2 quarantined")
    assert lines[0].startswith("2 of 5 models registered")
    assert any(line.startswith("(vN: score): not promoted") for line in lines)
    assert "Models: fruits360-classifier, underground-detector" in lines
    assert any("make report" in line and "dvc metrics show reports/evaluate/<dataset>/metrics.json" in line for line in lines)


def test_overlong_cells_are_clipped_not_wrapped():
    long = table([ModelLine("d" * 80, "classification", "e", None, "m" * 40, "1", "dice", 0.5, 3, True)])
    assert all(len(line) <= WIDTH for line in long) and long[2].endswith("…")


def test_main_prints_the_summary_and_names_a_missing_pipeline(tmp_path, capsys):
    root = _project(tmp_path)
    assert summary.main(["--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("0 of 5 models registered") and out.count("not registered yet") == 5

    assert summary.main(["--root", str(tmp_path / "elsewhere")]) == 1
    captured = capsys.readouterr()
    error = (captured.err + captured.out).strip().splitlines()
    assert len(error) == 1 and "dvc.yaml" in error[0]


def test_an_overlay_lists_only_its_own_datasets(tmp_path):
    """An overlay's task sections also hold its base's datasets (they merge); the summary lists only its ``datasets``."""
    root = _project(tmp_path)
    (root / "real.yaml").write_text("extends: params.yaml\n"
                                    "datasets:\n  real-set: {source: imagefolder, task: classification}\n"
                                    "classification:\n  datasets:\n    real-set: {epochs: 1}\n")
    _gate(root, "real-set", 12)
    _registered(root, "real-set", 4, model_name="real-set-classifier", version="1", alias="champion", promoted=True,
                metric="macro_f1", score=0.5)
    lines = summary.run(root, root / "real.yaml")
    assert lines[0].startswith("1 model registered")
    rows = [line.split() for line in lines[2:] if line.startswith("  ") and not line.startswith("   ")]
    assert rows[0][:4] == ["real-set", "classification", "4", "passed"], lines
    assert len([row for row in rows if row[0] in {"fruits360", "simpsons", "coco", "underground", "dsb2018"}]) == 0, lines
