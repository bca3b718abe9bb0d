"""``reports/index.html``: one self-contained page of the pipeline's results, readable offline.

Everything is in the page: the styles inline, the pictures as ``data:`` URIs, the metric history as
inline SVG; no script and no address outside it, so it opens the same from a laptop, a CI artifact or
an e-mail attachment. Per dataset: the gate's checks and quarantined files, the held-out metrics, the
evaluation's pictures, the registered version with its lineage, and the metric's history in git.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

from cvpipe.report.content import DatasetContent, decision

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
header, section { max-width: 1100px; margin: 0 auto; padding: 16px 24px; }
header { border-bottom: 1px solid #dde1e7; background: #fff; max-width: none; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 28px 0 6px; } h3 { font-size: 16px; margin: 18px 0 6px; }
section { background: #fff; margin-top: 18px; border: 1px solid #dde1e7; border-radius: 6px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border-bottom: 1px solid #e6e9ee; padding: 3px 10px 3px 0; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1a7f37; } .bad { color: #c0362c; font-weight: 600; } .warn { color: #9a6700; }
.muted { color: #667085; } code { font-size: 12.5px; }
figure { margin: 10px 0 18px; } figure img { max-width: 100%; border: 1px solid #e6e9ee; }
figcaption { font-size: 13px; color: #475467; margin-bottom: 4px; }
nav a { margin-right: 14px; }
"""


@dataclass(frozen=True)
class HistoryPoint:
    commit: str
    date: str
    subject: str
    value: float | None


@dataclass
class DatasetPage:
    """What the page shows of one dataset: its content, lineage rows and the metric's history (oldest first)."""

    content: DatasetContent
    lineage: list[tuple[str, str]] = field(default_factory=list)  # (what, hash or value)
    history: list[HistoryPoint] = field(default_factory=list)
    history_note: str = ""


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return f'<td class="{"ok" if value else "bad"}">{"yes" if value else "no"}</td>'
    if isinstance(value, (int, float)):
        return f'<td class="num">{escape(str(value))}</td>'
    return f"<td>{escape(str(value))}</td>"


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="muted">nothing yet</p>'
    columns = list(rows[0])
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(row.get(c, "")) for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def sparkline(points: list[HistoryPoint], width: int = 420, height: int = 90) -> str:
    """The metric across commits as an inline SVG (no script, nothing fetched)."""
    values = [(i, p.value) for i, p in enumerate(points) if p.value is not None]
    if len(values) < 2:
        return ""
    low, high = min(v for _, v in values), max(v for _, v in values)
    span = (high - low) or 1.0
    step = (width - 20) / max(len(points) - 1, 1)
    xy = [(10 + i * step, height - 10 - (v - low) / span * (height - 20)) for i, v in values]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{escape(points[i].commit)}: {v:.4f}</title></circle>'
                   for (x, y), (i, v) in zip(xy, values, strict=True))
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="metric history">'
            f'<polyline points="{path}" fill="none" stroke="#2f6fdb" stroke-width="2"/><g fill="#2f6fdb">{dots}</g>'
            f'<text x="{width - 4}" y="12" text-anchor="end" font-size="11" fill="#667085">{high:.4f}</text>'
            f'<text x="{width - 4}" y="{height - 2}" text-anchor="end" font-size="11" fill="#667085">{low:.4f}</text></svg>')


def _gate(content: DatasetContent) -> str:
    verdict = content.gate_verdict
    cls = "bad" if verdict.startswith("FAILED") else "muted" if verdict == "not run" else "ok"
    parts = [f'<h3>Data gate</h3><p class="{cls}">{escape(verdict)}</p>', table(content.checks)]
    if content.quarantined:
        parts += [f"<p>Quarantined ({len(content.quarantined)}):</p>", table(content.quarantined)]
    return "".join(parts)


def _model(page: DatasetPage, mlflow_ui: str | None) -> str:
    from cvpipe.report.content import model_version_url

    reg = page.content.registry
    parts = [f"<h3>Model</h3><p>{escape(decision(reg))}</p>"]
    url = model_version_url(mlflow_ui, reg) if mlflow_ui and reg else None
    if url:  # a link, not a resource: the page loads nothing from it
        parts.append(f'<p class="muted">In the MLflow UI (<code>make ui</code>): <a href="{escape(url)}">{escape(url)}</a></p>')
    if page.lineage:
        parts.append("<p>Lineage (dvc.lock):</p>" + table([{"input": what, "hash": value} for what, value in page.lineage]))
    return "".join(parts)


def _history(page: DatasetPage) -> str:
    metric = page.content.registry.get("metric") or "metric"
    if not page.history:
        return f'<h3>History of {escape(metric)}</h3><p class="muted">{escape(page.history_note or "no earlier commits")}</p>'
    rows = [{"commit": p.commit, "date": p.date, metric: "undefined" if p.value is None else round(p.value, 4),
             "message": p.subject[:90]} for p in reversed(page.history)]
    return f"<h3>History of {escape(metric)} (the commits of its metrics.json)</h3>{sparkline(page.history)}{table(rows)}"


def _dataset(page: DatasetPage, mlflow_ui: str | None) -> str:
    c = page.content
    images = c.metrics.get("images")
    pictures = "".join(f'<figure><figcaption>{escape(p.title)} <span class="muted">({escape(p.path.name)})</span></figcaption>'
                       f'<img src="{p.data_uri()}" alt="{escape(p.title)}"></figure>' for p in c.pictures)
    return (f'<section id="{escape(c.dataset)}"><h2>{escape(c.dataset)} <span class="muted">({escape(c.task)})</span></h2>'
            f"{_gate(c)}<h3>Metrics on the held-out split"
            f"{f' ({images} images)' if images is not None else ''}</h3>{table(c.scalars)}"
            f"{_model(page, mlflow_ui)}{_history(page)}"
            f"<h3>Pictures</h3>{pictures or '<p class=muted>the evaluate stage has not run</p>'}</section>")


def overview(pages: list[DatasetPage]) -> str:
    """One row per dataset, linking to its section: the gate, the promotion metric, the registry's decision."""
    rows = []
    for p in pages:
        c, reg = p.content, p.content.registry
        score = reg.get("score")
        rows.append(f'<tr><td><a href="#{escape(c.dataset)}">{escape(c.dataset)}</a></td><td>{escape(c.task)}</td>'
                    f"<td>{escape(c.gate_verdict.split(':')[0])}</td>"
                    f"<td>{escape(reg.get('metric', '-'))}</td>"
                    f'<td class="num">{"-" if score is None else f"{score:.4f}"}</td><td>{escape(decision(reg).split(" (")[0])}</td></tr>')
    head = "".join(f"<th>{h}</th>" for h in ("dataset", "task", "gate", "metric", "held-out score", "registry"))
    return f"<section><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"


def render(pages: list[DatasetPage], title: str, subtitle: str, mlflow_ui: str | None = None) -> str:
    """The whole page."""
    nav = "".join(f'<a href="#{escape(p.content.dataset)}">{escape(p.content.dataset)}</a>' for p in pages)
    body = overview(pages) + "".join(_dataset(p, mlflow_ui) for p in pages)
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
            f'<header><h1>{escape(title)}</h1><p class="muted">{escape(subtitle)}</p><nav>{nav}</nav></header>'
            f"{body}</body></html>\n")
