"""Headless Chromium (Debian's package) opening a local page: which images loaded, what it fetched."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PROBE = ("<script>addEventListener('load', () => { const imgs = [...document.images];"
         " document.title = 'probe:' + imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length + '/' + imgs.length; });"
         "</script>")


def chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None)


@dataclass(frozen=True)
class Visit:
    images: int
    broken: int
    fetched: list[str]  # every http(s)/ws URL the page asked for (the browser's own background requests left out)


def visit(page: Path, work: Path, screenshot: Path | None = None) -> Visit:
    """Open a copy of ``page`` with a probe script added (counting images that did not decode) and Chromium's network
    log on; the page itself is not changed."""
    work.mkdir(parents=True, exist_ok=True)
    probe = page.with_name(f".probe-{page.name}")
    html = page.read_text(encoding="utf-8")
    probe.write_text(html.replace("</body>", PROBE + "</body>") if "</body>" in html else html + PROBE, encoding="utf-8")
    net = work / "net.json"
    flags = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-default-apps",
             f"--user-data-dir={work / 'profile'}", f"--log-net-log={net}", "--virtual-time-budget=5000"]
    try:
        dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
        if screenshot is not None:
            subprocess.run([*flags, "--window-size=1280,2400", f"--screenshot={screenshot}", page.as_uri()],
                           capture_output=True, timeout=120, check=True)
    finally:
        probe.unlink()
    title = dom.split("<title>", 1)[1].split("</title>", 1)[0] if "<title>" in dom else ""
    assert title.startswith("probe:"), f"the probe did not run: title {title!r}"
    broken, images = (int(n) for n in title.removeprefix("probe:").split("/"))
    log = json.loads(net.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    fetched = [e["params"]["url"] for e in log["events"] if e.get("type") == start
               and e.get("params", {}).get("url", "").split(":", 1)[0] in ("http", "https", "ws", "wss")
               and e["params"].get("initiator") != "not an origin"]  # "not an origin": Chromium's own requests, not the page's
    return Visit(images, broken, fetched)
