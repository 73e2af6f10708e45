"""The dashboard in a real headless browser: Debian's chromium, driven by Selenium through
Debian's chromedriver (no download: both paths are given). A 3-node fast lab; the page
shows three green nodes; node-2 killed by chaos turns red and its fault is listed; after
the heal it turns green again and the fault leaves the list.

Skipped when /usr/bin/chromium or /usr/bin/chromedriver is missing, unless
KEMU_REQUIRE_BROWSER=1 (``make test`` sets it once ``make browser-deps`` installed them),
in which case it fails instead.
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from lab.lab import Lab

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REQUIRED = os.environ.get("KEMU_REQUIRE_BROWSER") == "1"
MISSING = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000"]
GREEN, RED = "rgba(46, 157, 70, 1)", "rgba(211, 58, 44, 1)"   # --ready and --notready in dashboard.css

pytestmark = pytest.mark.skipif(
    bool(MISSING) and not REQUIRED,
    reason=f"{' and '.join(MISSING)} missing: 'make browser-deps' installs Debian's chromium and "
           "chromium-driver (make test does it, and then requires them: KEMU_REQUIRE_BROWSER=1)")


@pytest.fixture(autouse=True)
def kemu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEMU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KEMU_SERVER", raising=False)
    return tmp_path / "home"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if MISSING:
        pytest.fail(f"KEMU_REQUIRE_BROWSER=1 but {' and '.join(MISSING)} missing: run 'make browser-deps' "
                    "(see .kemu/browser.status)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        opts.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        driver.quit()


def start_dashboard(lab: Lab) -> tuple[subprocess.Popen, str]:
    """``kemu dashboard`` as a process; its URL from the first line it prints (bounded wait)."""
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "dashboard", "--name", lab.name],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        first = lines.get(timeout=30)
    except queue.Empty:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"kemu dashboard printed no URL within 30s: {proc.stderr.read() if proc.stderr else ''}")
    assert first.startswith(f"dashboard for lab {lab.name}: http://127.0.0.1:"), first
    return proc, first.split(": ", 1)[1].split()[0]


def node_cells(driver: Any) -> dict[str, tuple[str, str]]:
    """{node: (data-status, computed background colour)} of every cell in the grid."""
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#nodes .node')].map(e => "
        "[e.dataset.node, [e.dataset.status, getComputedStyle(e).backgroundColor]]))")


def colour(rgb: str) -> str:
    return rgb.replace("rgb(", "rgba(").replace(")", ", 1)") if rgb.startswith("rgb(") else rgb


def faults_listed(driver: Any) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#faults tbody tr')].map(e => e.dataset.fault)")


def test_the_page_follows_a_node_kill_and_its_heal(browser: Any) -> None:
    from selenium.webdriver.support.ui import WebDriverWait
    with Lab(3, name="dash", profile="fast", dns=False) as lab:
        proc, url = start_dashboard(lab)
        try:
            browser.get(url)
            wait = WebDriverWait(browser, 60, poll_frequency=0.1)
            green = {n: ("ready", GREEN) for n in ("node-1", "node-2", "node-3")}
            wait.until(lambda d: {n: (s, colour(c)) for n, (s, c) in node_cells(d).items()} == green,
                       "three green nodes")
            assert browser.find_element("id", "connection").text == "live"
            assert browser.find_element("id", "no-faults").is_displayed()

            fault = lab.chaos.kill("node-2")
            wait.until(lambda d: faults_listed(d) == [fault.id], f"{fault.id} in the faults list")
            row = browser.find_element("css selector", f'#faults tr[data-fault="{fault.id}"]').text
            assert "kill" in row and "node-2" in row and "until healed" in row
            wait.until(lambda d: node_cells(d).get("node-2", ("", ""))[0] == "notready", "node-2 red")
            assert colour(node_cells(browser)["node-2"][1]) == RED
            assert {n: s for n, (s, _) in node_cells(browser).items()} == {
                "node-1": "ready", "node-2": "notready", "node-3": "ready"}
            # the timeline shades the open fault window
            assert browser.find_elements("css selector", f'#timeline rect.window[data-fault="{fault.id}"]')

            lab.chaos.heal(fault.id)
            wait.until(lambda d: node_cells(d).get("node-2", ("", ""))[0] == "ready", "node-2 green again")
            assert colour(node_cells(browser)["node-2"][1]) == GREEN
            wait.until(lambda d: faults_listed(d) == [], "the fault out of the list")
            assert browser.find_elements("css selector", f'#timeline rect.window[data-fault="{fault.id}"]')
            logs = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
            assert not logs, logs
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                raise
            err = proc.stderr.read() if proc.stderr else ""
        assert rc == 0, err
