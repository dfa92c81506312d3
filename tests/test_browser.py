"""report.html and compare.html as a reader opens them: in a real browser (Debian's headless
Chromium), every embedded image decodes, the summary is there, and every contents link has a target.

A copy of each page gets a probe script that, once the page has loaded, writes into the DOM how
many images there are and how many decoded; Chromium's --dump-dom prints the DOM after load.
Without Chromium the test is skipped, except in CI (`.ci/run` installs it), where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PROBE = ("<script>addEventListener('load', () => { const images = [...document.images];"
         " document.body.dataset.images = images.length + ' '"
         " + images.filter(image => image.complete && image.naturalWidth > 0).length; });</script>")

pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                reason="chromium is not installed (apt-get install -y chromium; .ci/run installs it)")


def rendered_dom(page: Path, scratch: Path) -> str:
    """The page's DOM after it loaded in headless Chromium (with the probe's figures)."""
    assert CHROMIUM, "chromium is not installed: .ci/run installs it (apt-get install -y chromium)"
    probed = scratch / f"probed-{page.name}"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    # Chromium refuses to run as root with its sandbox (CI containers run as root).
    sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []
    completed = subprocess.run(
        [CHROMIUM, "--headless", *sandbox, "--disable-gpu", "--disable-dev-shm-usage", f"--user-data-dir={scratch / 'profile'}",
         "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


def assert_reads_in_a_browser(page: Path, scratch: Path) -> None:
    embedded = page.read_text(encoding="utf-8").count("<img ")
    dom = rendered_dom(page, scratch)
    found = re.search(r'data-images="(\d+) (\d+)"', dom)
    assert found, f"{page.name}: the load probe did not run\n{dom[:500]}"
    assert (int(found[1]), int(found[2])) == (embedded, embedded), f"{page.name}: {found[2]} of {found[1]} images decoded"
    assert embedded >= 4
    assert '<h2 id="summary">Summary</h2>' in dom and '<div class="summary">' in dom
    targets = set(re.findall(r' id="([^"]+)"', dom))
    links = re.findall(r'<a href="#([^"]+)"', dom)
    assert links and set(links) <= targets, f"{page.name}: contents links without a target: {set(links) - targets}"


@pytest.mark.slow
def test_report_and_compare_pages_load_every_image_and_show_the_summary(tmp_path):
    folder = tmp_path / "with-fault"
    shutil.copytree(FIXTURES / "with-fault", folder)
    assert main(["report", str(folder)]) == 0
    assert_reads_in_a_browser(folder / "report.html", tmp_path)
    out = tmp_path / "cmp"
    assert main(["compare", str(FIXTURES / "baseline"), str(FIXTURES / "latency-2x"), "--out", str(out)]) == 0
    assert_reads_in_a_browser(out / "compare.html", tmp_path)
    assert "Verdict: complete" in (folder / "report.html").read_text(encoding="utf-8")
