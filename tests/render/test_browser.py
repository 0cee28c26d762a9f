"""Open the HTML report of a real run in headless Chromium: no console errors, every plot drawn.

The page itself has no JavaScript. The test loads a copy with one appended script that records
each SVG's box, so the screenshot can be checked plot by plot (chromium's --dump-dom returns the
DOM after scripts ran). Console messages come from `--enable-logging=stderr --v=0` ("CONSOLE" lines).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

import traindoctor as td

pytestmark = pytest.mark.browser

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--hide-scrollbars", "--force-device-scale-factor=1", "--enable-logging=stderr", "--v=0"]
_WIDTH = 1100
_PROBE = """<script>
document.addEventListener('DOMContentLoaded', function () {
  var boxes = [].map.call(document.querySelectorAll('svg.plot'), function (s) {
    var r = s.getBoundingClientRect();
    return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height];
  });
  var pre = document.createElement('pre'); pre.id = 'td-boxes';
  pre.textContent = JSON.stringify({boxes: boxes, height: document.documentElement.scrollHeight});
  document.body.appendChild(pre);
});
</script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not found (apt-get install chromium); the HTML was not checked in a browser")


def _run(browser, tmp_path, *args):
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    proc = subprocess.run([browser, *_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)
    return proc


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line]


def _load(browser, tmp_path, html_path, height):
    dom = _run(browser, tmp_path, f"--window-size={_WIDTH},{height}", "--dump-dom", html_path.as_uri())
    shot = tmp_path / "shot.png"
    pic = _run(browser, tmp_path, f"--window-size={_WIDTH},{height}", f"--screenshot={shot}", html_path.as_uri())
    return dom, pic, shot


def test_report_opens_without_console_errors_and_every_plot_is_visible(tb_run, tmp_path):
    browser = _chromium()
    Image = pytest.importorskip("PIL.Image")
    report = td.diagnose(tb_run)
    assert report.findings, "the tiny overfitting run should give findings to plot"
    page = report.to_html()
    n_svg = page.count('<svg xmlns="http://www.w3.org/2000/svg" class="plot"')
    assert n_svg >= 2
    assert report.has("overfitting") and 'class="best"' in page  # the best step is marked
    html_path = tmp_path / "report.html"
    html_path.write_text(page.replace("</body>", _PROBE + "</body>"), encoding="utf-8")

    dom, _, _ = _load(browser, tmp_path, html_path, 800)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console_lines(dom.stderr) == []
    m = re.search(r'<pre id="td-boxes">(.*?)</pre>', dom.stdout)
    assert m, "the page did not finish loading"
    info = json.loads(m.group(1).replace("&quot;", '"'))
    boxes, height = info["boxes"], int(info["height"]) + 20
    assert len(boxes) == n_svg and all(w > 300 and h > 100 for _, _, w, h in boxes)

    dom, pic, shot = _load(browser, tmp_path, html_path, height)
    assert pic.returncode == 0 and shot.exists(), pic.stderr[-2000:]
    assert _console_lines(dom.stderr) == [] and _console_lines(pic.stderr) == []
    img = Image.open(shot).convert("RGB")
    assert img.size[0] == _WIDTH
    for x, y, w, h in boxes:
        crop = img.crop((int(x) + 70, int(y) + 30, int(x + w) - 20, int(y + h) - 45))  # the plot area
        colours = crop.getcolors(maxcolors=1 << 20)
        assert colours is not None
        ink = sum(n for n, rgb in colours if max(rgb) - min(rgb) > 60)  # saturated: series, not grid/text
        assert ink > 150, f"plot at {x:.0f},{y:.0f} looks empty ({ink} coloured pixels)"


def test_the_console_check_catches_an_error(tmp_path):
    """The harness itself: a page that logs an error must be caught, or the test above proves nothing."""
    browser = _chromium()
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>console.error('boom')</script></body></html>")
    proc = _run(browser, tmp_path, "--window-size=400,300", "--dump-dom", bad.as_uri())
    assert any("boom" in line for line in _console_lines(proc.stderr)), proc.stderr[-2000:]
