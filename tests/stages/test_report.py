"""`make report`: one self-contained page that a browser shows offline, every picture loaded, nothing fetched."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from stages import report
from tests.browser import chromium, visit
from tests.stages.test_summary import REPO, finished_project


def _commit(root: Path, message: str) -> None:
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], cwd=root, check=True)


@pytest.fixture
def project(tmp_path) -> Path:
    """The finished sample project, with dvc.lock, in git: macro_f1 0.8 in its first commit, 0.875 in its second."""
    root = finished_project(tmp_path)
    shutil.copyfile(REPO / "dvc.lock", root / "dvc.lock")
    metrics = root / "reports/evaluate/fruits360/metrics.json"
    final = metrics.read_text()
    metrics.write_text(json.dumps({**json.loads(final), "macro_f1": 0.8}))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    _commit(root, "first model")
    metrics.write_text(final)
    _commit(root, "more epochs")
    return root


def test_the_report_holds_each_datasets_gate_metrics_model_lineage_history_and_pictures(project):
    page = report.run(project).read_text()
    assert page.count('<section id="') == 5
    fruits = page[page.index('<section id="fruits360">'):page.index('<section id="simpsons">')]
    assert "classes.balance" in fruits and "Kiwi, Lemon" in fruits  # the gate's checks, with examples
    assert '<td class="num">0.875</td>' in fruits  # metrics.json's figure
    assert "fruits360-classifier v2 is @challenger; v1 stays @champion" in fruits
    lock = json.dumps(report.yaml.safe_load((project / "dvc.lock").read_text())["stages"]["register@fruits360"])
    raw_md5 = next(d["md5"] for d in json.loads(lock)["deps"] if d["path"] == "data/raw/fruits360")
    assert f"<td>data/raw/fruits360</td><td>{raw_md5}</td>" in fruits  # lineage: the data hash dvc.lock recorded
    history = fruits[fruits.index("History of macro_f1"):]
    assert history.index("more epochs") < history.index("first model")  # newest first, both commits
    assert '<td class="num">0.8</td>' in history and "<svg" in history
    assert fruits.count('src="data:image/png;base64,') == 2
    coco = page[page.index('<section id="coco">'):page.index('<section id="underground">')]
    assert "a/b.jpg" in coco and "cannot decode" in coco  # the quarantined file, and why
    assert "not registered yet" in page[page.index('<section id="dsb2018">'):]


@pytest.mark.skipif(chromium() is None, reason="needs Chromium (Debian's chromium package)")
def test_a_browser_shows_every_picture_and_the_page_fetches_nothing(project, tmp_path):
    page = report.run(project)
    seen = visit(page, tmp_path / "browser")
    assert seen.images == 2 and seen.broken == 0
    assert seen.fetched == []
    # the same probe catches a page that does fetch: a stylesheet and an image from elsewhere, neither loadable here
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><title>x</title><link rel="stylesheet" href="https://cdn.example.invalid/a.css">'
                   '</head><body><img src="http://example.invalid/x.png"></body></html>')
    caught = visit(bad, tmp_path / "bad")
    assert caught.broken == 1 and sorted(caught.fetched) == ["http://example.invalid/x.png", "https://cdn.example.invalid/a.css"]


def test_main_names_its_page_and_a_missing_pipeline_in_one_line(project, tmp_path, capsys):
    assert report.main(["--root", str(project), "--out", str(tmp_path / "r.html")]) == 0
    assert "self-contained" in capsys.readouterr().out and (tmp_path / "r.html").is_file()
    assert report.main(["--root", str(tmp_path / "nowhere")]) == 1
    captured = capsys.readouterr()
    lines = (captured.err + captured.out).strip().splitlines()
    assert len(lines) == 1 and "dvc.yaml" in lines[0]
