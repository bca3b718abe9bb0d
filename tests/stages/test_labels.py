"""python -m stages.labels: labels flipped on purpose come out at the top of the queue."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from cvpipe.classification.fit import TrainConfig
from cvpipe.core.errors import ParamsError
from cvpipe.core.params import LabelSettings, label_settings
from cvpipe.sources.samples import generate
from cvpipe.tasks import Compute
from stages import ingest, labels

FLIPS = 6  # of the sample's 120 training images (5%)
CONFIG = {"architecture": "littlevgg", "image_size": 32, "epochs": 15, "batch_size": 16, "lr": 0.003, "patience": 15, "seed": 0}


@pytest.fixture(scope="module")
def flipped(tmp_path_factory) -> tuple[Path, set[str]]:
    """The Fruits-360 sample with FLIPS training images moved into the next class's folder, ingested; their new paths."""
    root = tmp_path_factory.mktemp("flipped")
    raw = generate("fruits360", root / "raw")
    classes = sorted(p.name for p in (raw / "Training").iterdir())
    planted = set()
    for k in range(FLIPS):
        source = classes[k % len(classes)]
        target = classes[(k + 1) % len(classes)]
        image = sorted((raw / "Training" / source).iterdir())[k]
        moved = raw / "Training" / target / f"moved_{image.name}"
        image.rename(moved)
        planted.add(moved.relative_to(raw).as_posix())
    ingest.run("fruits360", raw, root / "manifest")
    return root, planted


@pytest.fixture(scope="module")
def queue(flipped):
    root, planted = flipped
    settings = LabelSettings(folds=3, epochs=None, top=2 * FLIPS, seed=0)
    result = labels.run("fruits360", "classification", root / "manifest", root / "labels", TrainConfig.from_params(CONFIG),
                        settings, Compute("cpu", 2, None))
    with (root / "labels" / "queue.csv").open() as f:
        rows = list(csv.DictReader(f))
    return result, rows, planted, root / "labels"


def test_flipped_labels_are_found_at_the_top_of_the_queue(queue):
    result, rows, planted, _ = queue
    top = [row["image"] for row in rows[: 2 * FLIPS]]
    found = planted & set(top)
    precision_at_flips = len(planted & set(top[:FLIPS])) / FLIPS
    print(f"planted {FLIPS}: {len(found)} in the top {2 * FLIPS}, precision at {FLIPS}: {precision_at_flips:.2f}")
    assert found == planted and precision_at_flips >= 5 / 6, (top, planted)
    assert [int(row["rank"]) for row in rows] == list(range(1, len(rows) + 1))
    assert [float(r["score"]) for r in rows] == sorted((float(r["score"]) for r in rows), reverse=True)
    assert result.queued == len(rows) <= 2 * FLIPS <= result.suspects or result.suspects == len(rows)


def test_each_queued_label_says_what_the_folds_saw_and_has_its_picture(queue):
    _, rows, planted, out = queue
    row = next(r for r in rows if r["image"] in planted)
    given = Path(row["image"]).parent.name
    assert row["problem"] == "label" and row["evidence"].startswith(f"labelled {given} (p=")
    assert "models that never saw it say" in row["evidence"] and given not in row["evidence"].split("say ")[1]
    for r in rows:
        assert (out / r["picture"]).read_bytes()[:4] == b"\x89PNG"
    assert (out / "overview.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "queue.json").read_text())
    assert summary["task"] == "classification" and summary["settings"]["folds"] == 3 and summary["queued"] == len(rows)


def test_a_task_without_a_queue_and_bad_settings_are_one_line(tmp_path, capsys, monkeypatch):
    from cvpipe.segmentation.task import SegmentationTask

    monkeypatch.setattr(SegmentationTask, "label_review", None)  # every task has a queue now: one that has none yet
    params = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    params["labels"] = {"folds": 1}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=r"labels\.folds"):
        label_settings(params)
    assert labels.main(["--dataset", "fruits360", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"),
                        "--params", str(path)]) == 1
    params["labels"] = {}
    path.write_text(yaml.safe_dump(params))
    assert labels.main(["--dataset", "dsb2018", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--params", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "labels.folds" in err[0] and "has no label-error queue yet" in err[1], err
    assert not (tmp_path / "o").exists()


def test_the_sample_as_generated_queues_no_label(tmp_path):
    """No false alarm: the generated sample's labels are all right, so confident learning flags none of its images."""
    raw = generate("fruits360", tmp_path / "raw")
    ingest.run("fruits360", raw, tmp_path / "manifest")
    result = labels.run("fruits360", "classification", tmp_path / "manifest", tmp_path / "labels",
                        TrainConfig.from_params(CONFIG), LabelSettings(folds=3, epochs=None, top=2 * FLIPS, seed=0),
                        Compute("cpu", 2, None))
    assert result.suspects == 0 and (tmp_path / "labels" / "queue.csv").read_text().strip() == ",".join(labels.COLUMNS)
    assert not (tmp_path / "labels" / "overview.png").exists()


def test_the_data_folder_defaults_to_what_the_datasets_train_stage_reads():
    root = Path(__file__).resolve().parents[2]
    assert labels.training_folder("fruits360", root / "params.yaml", root) == root / "data" / "validated" / "fruits360"
    assert labels.training_folder("underground", root / "params.yaml", root) == root / "data" / "yolo" / "underground"
