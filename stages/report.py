"""Write ``reports/index.html``: the pipeline's results on one self-contained page (``make report``).

Per dataset of dvc.yaml's register stages: the gate's checks and quarantined files, the held-out
metrics, the evaluation's pictures (inline), the registered version and its lineage (the hashes
dvc.lock recorded for what its register stage read), and the promotion metric's history across the
git commits of its ``metrics.json``. The page loads nothing from anywhere: open it offline.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import yaml

from cvpipe.core import cli
from cvpipe.core.io import write_text
from cvpipe.report.content import gather
from cvpipe.report.html import DatasetPage, HistoryPoint, render
from stages.summary import Located, locate


def lineage(lock: dict, found: Located) -> list[tuple[str, str]]:
    """What the register stage read, with the hash dvc.lock recorded (the library's code left out)."""
    stage = (lock.get("stages") or {}).get(found.stage) or {}
    rows = []
    for dep in stage.get("deps") or []:
        path = dep.get("path", "")
        if path.startswith(("cvpipe", "stages/")):
            continue
        rows.append((path, str(dep.get("md5", ""))))
    return rows


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def history(root: Path, metrics_json: Path, metric: str, limit: int = 30) -> tuple[list[HistoryPoint], str]:
    """``metric`` in ``metrics_json`` at each git commit that changed it (oldest first), or why there is none."""
    if not metric:
        return [], "not registered yet: no promotion metric to follow"
    log = _git(root, "log", f"-n{limit}", "--format=%h%x09%cs%x09%s", "--", str(metrics_json))
    if log is None:
        return [], "no git history here"
    points = []
    for line in log.splitlines():
        commit, date, subject = [*line.split("\t", 2), "", ""][:3]
        shown = _git(root, "show", f"{commit}:{metrics_json.as_posix()}")
        try:
            value = json.loads(shown).get(metric) if shown else None
        except ValueError:
            value = None
        points.append(HistoryPoint(commit, date, subject, value if isinstance(value, (int, float)) else None))
    return points[::-1], "" if points else f"no commit of {metrics_json} yet"


def run(root: Path = Path("."), out: Path | None = None, mlflow_ui: str | None = "http://127.0.0.1:5000") -> Path:
    """Write the report for the project at ``root`` to ``out`` (default ``root/reports/index.html``); its path."""
    out = out or root / "reports/index.html"
    lock_file = root / "dvc.lock"
    lock = yaml.safe_load(lock_file.read_text(encoding="utf-8")) if lock_file.is_file() else {}
    pages = []
    for found in locate(root):
        content = gather(found.dataset, found.task, root / found.gate_report if found.gate_report else None,
                         root / found.validated, root / found.eval_dir, root / found.register_json,
                         root / found.gate_metrics if found.gate_metrics else None)
        points, note = history(root, found.eval_dir / "metrics.json", content.registry.get("metric", ""))
        pages.append(DatasetPage(content, lineage(lock or {}, found), points, note))
    head = (_git(root, "log", "-1", "--format=%h %s") or "").strip()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = f"{len(pages)} datasets · written {when}" + (f" · at commit {head[:80]}" if head else "")
    write_text(out, render(pages, "Pipeline results", subtitle, mlflow_ui))
    return out


def get_args_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m stages.report``."""
    parser = argparse.ArgumentParser(prog="python -m stages.report", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="the project folder (default: here)")
    parser.add_argument("--out", type=Path, help="the page to write (default: ROOT/reports/index.html)")
    parser.add_argument("--mlflow-ui", default="http://127.0.0.1:5000", help="where model links point (make ui's MLflow UI)")
    return parser


def execute(args: argparse.Namespace) -> Path:
    out = run(args.root, args.out, args.mlflow_ui)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB, self-contained: open it in a browser)")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m stages.report``: 0, or 1 with one error line."""
    return cli.main(get_args_parser(), execute, argv)


if __name__ == "__main__":
    raise SystemExit(main())
