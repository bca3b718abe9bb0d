"""The end of ``make run``: one short line per registered model, read from what the register stages wrote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cvpipe.report.summary import WIDTH, ModelLine, table
from stages import summary

REPO = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path) -> Path:
    """A project with the repository's own pipeline map and parameters, and nothing run yet."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copyfile(REPO / name, tmp_path / name)
    return tmp_path


def _registered(root: Path, dataset: str, images: int, **reg) -> None:
    (root / "reports/register").mkdir(parents=True, exist_ok=True)
    (root / "reports/register" / f"{dataset}.json").write_text(json.dumps(reg))
    (root / "reports/evaluate" / dataset).mkdir(parents=True, exist_ok=True)
    (root / "reports/evaluate" / dataset / "metrics.json").write_text(json.dumps({"images": images, reg["metric"]: reg["score"]}))


def test_one_line_per_register_stage_none_wider_than_the_terminal(tmp_path):
    root = _project(tmp_path)
    _registered(root, "fruits360", 60, model_name="fruits360-classifier", version="3", alias="champion", promoted=True,
                metric="macro_f1", score=0.98765, champion_version=None, champion_score=None)
    _registered(root, "underground", 96, model_name="underground-detector", version="12", alias="challenger", promoted=False,
                metric="map50_95", score=0.41, champion_version="7", champion_score=0.5321)

    lines = summary.run(root)

    assert all(len(line) <= WIDTH for line in lines), [len(line) for line in lines]
    assert not any(line.endswith("…") for line in lines)  # nothing had to be clipped
    by_dataset = {line.split()[0]: line for line in lines if line.startswith("  ")}
    # every register stage of dvc.yaml has its line, in the pipeline's order
    assert list(by_dataset) == ["fruits360", "simpsons", "coco", "underground", "dsb2018"]
    assert "fruits360-classifier v3" in by_dataset["fruits360"]
    assert "macro_f1 0.9877" in by_dataset["fruits360"] and "60 images" in by_dataset["fruits360"]
    assert "promoted to @champion" in by_dataset["fruits360"]
    assert "underground-detector v12" in by_dataset["underground"] and "map50_95 0.4100" in by_dataset["underground"]
    assert "@challenger (v7: 0.5321)" in by_dataset["underground"]
    assert any(line.startswith("@challenger (vN: score): not promoted") for line in lines)
    for pending in ("simpsons", "coco", "dsb2018"):
        assert "not registered yet" in by_dataset[pending]
    assert lines[0].startswith("2 of 5 models registered")


def test_columns_line_up_and_overlong_cells_are_clipped_not_wrapped():
    lines = table([ModelLine("a", "e", "m1", "1", "dice", 0.5, 3, True),
                   ModelLine("bbbbbb", "e", "model-two", "10", "dice", 0.25, 300, False, "challenger", "9", 0.75)])
    rows = [line for line in lines if line.startswith("  ")]
    assert rows[0].index("m1 v1") == rows[1].index("model-two v10")
    assert rows[0].index("dice 0.5000") == rows[1].index("dice 0.2500")

    long = table([ModelLine("d" * 80, "e", "m" * 40, "1", "dice", 0.5, 3, True)])
    assert all(len(line) <= WIDTH for line in long) and long[1].endswith("…")


def test_main_prints_the_summary_and_names_a_missing_pipeline(tmp_path, capsys):
    root = _project(tmp_path)
    assert summary.main(["--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("0 of 5 models registered") and out.count("not registered yet") == 5

    assert summary.main(["--root", str(tmp_path / "elsewhere")]) == 1
    captured = capsys.readouterr()
    error = (captured.err + captured.out).strip().splitlines()
    assert len(error) == 1 and "dvc.yaml" in error[0]
