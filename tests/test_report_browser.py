"""The report in a real browser (headless Chromium via Selenium): every player loads, no console error.

Skipped when Chromium or its driver is missing, unless ``NMFINTERP_REQUIRE_BROWSER=1`` (CI sets
it): then a missing browser is a failure.
"""

import os
import shutil
import time
from pathlib import Path

import pytest

from nmfinterp import explain
from nmfinterp.plots import _toy_pipeline
from nmfinterp.report import write_report

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,1600",
]


def _browser_or_skip():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        why = f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("NMFINTERP_REQUIRE_BROWSER") == "1":
            pytest.fail(f"NMFINTERP_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)


@pytest.fixture
def driver(tmp_path):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver: Selenium Manager downloads nothing
    d = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    yield d
    d.quit()


def _audio_states(d):
    return d.execute_script(
        "return Array.from(document.querySelectorAll('audio')).map(a => ({"
        "ready: a.readyState, error: a.error ? a.error.code : null, duration: a.duration,"
        "src: a.currentSrc.slice(0, 22)}));"
    )


def test_report_plays_and_renders_in_chromium(driver, tmp_path):
    pipe, X = _toy_pipeline()
    ex = explain(pipe, X[:3])
    path = write_report(pipe, explanations=ex, path=tmp_path / "report.html", metrics={"x": 1.0})
    driver.get(path.resolve().as_uri())
    deadline = time.time() + 20
    states = _audio_states(driver)
    while time.time() < deadline and not all(s["ready"] >= 1 for s in states):
        time.sleep(0.2)
        states = _audio_states(driver)
    n_audio = path.read_text().count("<audio")
    assert len(states) == n_audio >= 3 * 3
    bad = [s for s in states if s["ready"] < 1 or s["error"] is not None]
    assert not bad, f"audio elements that did not load: {bad[:3]}"
    # metadata loaded: each player knows its clip's duration
    seconds = X.shape[1] / ex.sr
    assert all(abs(s["duration"] - seconds) < 0.01 for s in states), states[:3]
    assert all(s["src"] == "data:audio/wav;base64," for s in states)
    # every figure decoded (naturalWidth > 0)
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length;"
    )
    assert broken == 0
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    shot = tmp_path / "report.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    keep = os.environ.get("NMFINTERP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


def test_a_broken_page_is_detected(driver, tmp_path):
    """The checks above can fail: a player whose source is not audio, a missing image."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
        '<audio controls preload="auto" src="data:audio/wav;base64,AAAA"></audio>'
        '<img src="missing.png"></body></html>'
    )
    driver.get(page.resolve().as_uri())
    deadline = time.time() + 10
    states = _audio_states(driver)
    while time.time() < deadline and states[0]["error"] is None:
        time.sleep(0.2)
        states = _audio_states(driver)
    assert states[0]["error"] is not None and states[0]["ready"] == 0
    assert any(e["level"] == "SEVERE" for e in driver.get_log("browser"))


def test_missing_browser_fails_when_required(monkeypatch):
    monkeypatch.setitem(globals(), "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setenv("NMFINTERP_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="NMFINTERP_REQUIRE_BROWSER=1"):
        _browser_or_skip()
    monkeypatch.setenv("NMFINTERP_REQUIRE_BROWSER", "0")
    with pytest.raises(pytest.skip.Exception):
        _browser_or_skip()
