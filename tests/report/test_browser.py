# SPDX-License-Identifier: MIT
"""report.html in headless Chromium: no console error, live simulator, inert hostile text.

The hostile text is a record's instruction in a real data file, measured by
``thoughtgrad spectra`` on a tiny model and written by ``thoughtgrad report``.

Needs the ``playwright`` Python package (``pip install playwright``; its bundled browsers
are NOT used, never run ``playwright install``) and Debian's ``chromium``, which the
set-up installs with apt-get when ``/usr/bin/chromium`` is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from report_fixtures import HOSTILE, XSS, XSS_ESCAPED, make_run, make_toy_tables, real_spectra_run

from thoughtgrad.cli import main

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _ensure_chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        pytest.skip("/usr/bin/chromium is missing and apt-get is not available to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"could not install chromium ({' '.join(cmd)}: {exc})")
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
            pytest.skip(f"could not install chromium ({' '.join(cmd)} failed: {last[0]})")
    if not CHROMIUM.exists():
        pytest.skip("apt-get installed chromium but /usr/bin/chromium is still missing")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the browser test needs `pip install playwright`")
    exe = _ensure_chromium()
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(exe), args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_report_in_headless_chromium(browser, tmp_path: Path, capsys) -> None:
    real = real_spectra_run(tmp_path)  # a record whose instruction holds <script>alert(1)
    toy = make_run(tmp_path, "toy", make_toy_tables())
    page_path = tmp_path / "report.html"
    assert main(["report", str(real), str(toy), "--out", str(page_path), "--n-boot", "30",
                 "--metrics", "nuclear"]) == 0
    capsys.readouterr()
    html = page_path.read_text(encoding="utf-8")
    assert XSS_ESCAPED in html and XSS not in html  # escaped in the file, raw tag absent

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    console_errors: list[str] = []
    dialogs: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_path.as_uri())
    page.wait_for_load_state("load")

    direct = page.locator("#tg-sim-direct-verdict")
    cot = page.locator("#tg-sim-cot-verdict")
    assert direct.inner_text() == "overflow"  # L=4, K=6: five serial adds, four slots
    assert cot.inner_text() == "solvable"
    page.focus("#tg-sim-k")
    for _ in range(3):
        page.keyboard.press("ArrowLeft")  # K 6 -> 3
    assert page.locator("#tg-sim-k-value").inner_text() == "3"
    assert direct.inner_text() == "solvable"
    page.focus("#tg-sim-layers")
    page.keyboard.press("Home")  # L -> 1, the smallest transformer
    assert page.locator("#tg-sim-layers-value").inner_text() == "1"
    assert cot.inner_text() == "solvable" and direct.inner_text() == "overflow"  # K=3
    page.keyboard.press("End")  # L -> 16
    assert direct.inner_text() == "solvable" and cot.inner_text() == "solvable"

    body = page.inner_text("body")
    assert HOSTILE in body  # the record's instruction, shown as text ...
    assert dialogs == []  # ... and never run: no alert or other dialog
    assert page.evaluate(  # it sits in a table cell of the top-samples section, as text
        "[...document.querySelectorAll('td')].some(td => td.textContent.startsWith("
        "'<script>alert(1)</script> Tom has 3 apples'))")
    assert page.evaluate("document.querySelectorAll('script').length") == 1
    assert console_errors == []
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report_browser.png"), full_page=False)
    page.locator("#tg-sim").screenshot(path=str(ARTIFACTS / "report_simulator.png"))
    page.close()
