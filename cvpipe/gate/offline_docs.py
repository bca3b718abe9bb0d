"""Great Expectations' Data Docs that open offline: no stylesheet, script, font or logo from a CDN.

GX's page templates load Bootstrap, bootstrap-table, Font Awesome, jQuery and Vega from five CDNs and
the logo from S3; offline (this pipeline's machines, a laptop on a train) the page is unstyled and its
status icons blank. :func:`localize` rewrites each page of a built site: those tags go, GX's own logo
comes from the site's ``static/images``, and one local stylesheet (``static/styles/offline.css``, written
beside GX's own) gives the layout, the tables and the pass/fail marks in plain CSS. What the scripts
added (column filters, the datepicker, Vega charts, which the gate's suites do not use) is not there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cvpipe.core.io import write_text

# a <link> or <script> whose address is not on this machine: http(s) or protocol-relative
_REMOTE_TAG = re.compile(r"""<(link|script)\b[^>]*\b(?:href|src)=["'](?:https?:)?//[^"']*["'][^>]*>(?:\s*</script>)?""", re.I)
_GX_LOGO = re.compile(r"""https://great-expectations-web-assets\.s3[^"']*/(logo-long\.png)[^"']*""")
_REMOTE_ANY = re.compile(r"""(?:src|href)=["'](?:https?:)?//""", re.I)

OFFLINE_CSS = """/* cvpipe: Data Docs offline, in place of Bootstrap and Font Awesome from CDNs */
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330; margin: 0; background: #f6f7f9; }
.container-fluid { padding: 12px 20px; } .row { display: flex; flex-wrap: wrap; gap: 16px; }
.col-12, .col-md-12 { flex: 1 1 100%; } .col-md-9, .col-lg-9 { flex: 1 1 70%; min-width: 0; }
.col-md-3, .col-lg-3, .col-lg-2, .col-md-2 { flex: 0 0 220px; }
.col-md-6 { flex: 1 1 45%; } .col-md-4 { flex: 1 1 30%; } .col-md-8 { flex: 1 1 62%; }
nav.navbar, footer { padding: 8px 20px; background: #fff; border-bottom: 1px solid #dde1e7; }
.navbar img, .navbar-brand img { height: 28px; } ol.breadcrumb { display: flex; gap: 8px; list-style: none; padding: 0; margin: 6px 0; }
.card { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; margin-bottom: 14px; }
.card-header { padding: 8px 14px; border-bottom: 1px solid #e6e9ee; font-weight: 600; } .card-body { padding: 10px 14px; }
table, .table { border-collapse: collapse; width: auto; margin: 6px 0; }
th, td { border-bottom: 1px solid #e6e9ee; padding: 4px 12px 4px 0; text-align: left; vertical-align: top; }
.table-sm td, .table-sm th { padding: 3px 10px 3px 0; }
.d-none, .collapse:not(.show), .modal, .sticky, [data-toggle="tooltip"] + .tooltip { display: none; }
.list-group { list-style: none; padding: 0; } .list-group-item { padding: 3px 0; }
.text-success { color: #1a7f37; } .text-danger { color: #c0362c; } .text-warning { color: #9a6700; }
.fas, .fa { font-style: normal; font-weight: 700; }
.fa-check-circle::before, .fa-check::before { content: "\\2714"; color: #1a7f37; }
.fa-times::before, .fa-times-circle::before, .fa-exclamation-triangle::before { content: "\\2718"; color: #c0362c; }
.fa-info-circle::before { content: "\\24D8"; } .fa-question-circle::before { content: "?"; }
code, pre { font-size: 12.5px; background: #f2f4f7; padding: 1px 4px; border-radius: 3px; }
"""


def localize(site: Path) -> int:
    """Rewrite every page of the Data Docs site at ``site`` to load nothing from outside it; the pages changed."""
    css = site / "static" / "styles" / "offline.css"
    write_text(css, OFFLINE_CSS)
    changed = 0
    for page in sorted(site.rglob("*.html")):
        html = page.read_text(encoding="utf-8")
        static = Path(os.path.relpath(site / "static", page.parent)).as_posix()
        fixed = _GX_LOGO.sub(static.replace("\\", "\\\\") + r"/images/\1", html)
        fixed = _REMOTE_TAG.sub("", fixed)
        link = f'<link rel="stylesheet" href="{static}/styles/offline.css">'
        fixed = fixed.replace("</head>", link + "</head>", 1) if "</head>" in fixed else link + fixed
        if fixed != html:
            write_text(page, fixed)
            changed += 1
    return changed


def remote_references(site: Path) -> list[str]:
    """``page: tag`` for every address outside the site that a page of it still loads (empty when offline-ready)."""
    found = []
    for page in sorted(site.rglob("*.html")):
        for line in page.read_text(encoding="utf-8").splitlines():
            for match in re.finditer(r"<(?:link|script|img)\b[^>]*>", line, re.I):
                if _REMOTE_ANY.search(match.group(0)) and not match.group(0).lower().startswith("<a"):
                    found.append(f"{page.relative_to(site)}: {match.group(0)[:120]}")
    return found
