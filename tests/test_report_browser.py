"""The HTML report in a real browser: headless Chromium (Debian's `chromium` package) decodes every figure, and a
screenshot of the page is not blank. Installs nothing; skipped when /usr/bin/chromium is missing."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import pytest
from helpers.built_report import built_report
from PIL import Image, ImageStat

from comprobust.report import FIGURES

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is missing: install Debian's chromium (apt-get install -y chromium) to check the "
    "HTML report in a real browser",
)
PROBE = """<script>
window.addEventListener("load", () => {
  const found = [...document.images].map(img => ({file: img.dataset.file, complete: img.complete,
                                                  width: img.naturalWidth, height: img.naturalHeight}));
  const out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});
</script>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_every_figure_decodes_in_chromium(tmp_path_factory, tmp_path):
    built = built_report(tmp_path_factory)
    page = tmp_path / "probe.html"  # the report plus a probe script; the report itself has no script
    page.write_text(built.index.read_text().replace("</body>", PROBE + "</body>"))
    result = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    match = re.search(r'<pre id="image-check">(.*?)</pre>', result.stdout, re.DOTALL)
    assert match, f"no probe output from chromium (exit {result.returncode}): {result.stderr[-2000:]}"
    images = json.loads(html.unescape(match.group(1)))
    assert sorted(i["file"] for i in images) == sorted(FIGURES.values())
    for image in images:
        with Image.open(built.index.parent / image["file"]) as png:
            assert image["complete"] and (image["width"], image["height"]) == png.size, image


def test_screenshot_of_the_report_is_not_blank(tmp_path_factory, tmp_path):
    built = built_report(tmp_path_factory)
    shot = tmp_path / "report.png"
    result = chromium(
        tmp_path, "--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={shot}", built.index.as_uri()
    )
    assert shot.is_file(), f"chromium wrote no screenshot (exit {result.returncode}): {result.stderr[-2000:]}"
    with Image.open(shot) as image:
        assert image.size == (1280, 2400)
        rgb = image.convert("RGB")
        assert ImageStat.Stat(rgb.convert("L")).stddev[0] > 20  # text, tables and figures, not a blank page
        colours = rgb.getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 500  # the figures' colours made it onto the page
        # the box plot sits below the header and the headline table: its area is not empty
        box_area = rgb.crop((40, 700, 1200, 1300))
        assert ImageStat.Stat(box_area.convert("L")).stddev[0] > 20
