"""The dashboard in a real browser: Debian's chromium, headless, driven by Selenium.

Skipped with the reason when chromium, chromedriver or selenium is missing; with
TOKENPOOL_REQUIRE_BACKENDS=1 (CI, after .ci/install-browser) it fails instead.
"""
import asyncio
import datetime as dt
import shutil
import threading
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from shared.core.models import ChatState
from shared.dashboard.server import create_app
from tests.backends import _unavailable
from tests.shared.dashboard_support import LABELS, build_dashboard_fixture, record
from tests.shared.report_fixtures import NOW

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1440,2600"]


def _require_browser():
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        _unavailable("chromium", f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        _unavailable("chromium", "selenium is not installed (pip install -e '.[test]')")


class ServerThread:
    """The dashboard on 127.0.0.1 (aiohttp's TestServer) in its own thread and event loop."""

    def __init__(self, app):
        self.loop = asyncio.new_event_loop()
        self.server = TestServer(app, host="127.0.0.1")
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start_server(), self.loop).result(timeout=120)
        return str(self.server.make_url("/"))

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(timeout=120)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=120)
        self.loop.close()


@pytest.fixture
def browser(tmp_path, monkeypatch):
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")       # selenium must never fetch a driver or browser
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(300)
    yield driver
    driver.quit()


def test_page_loads_clean_shows_every_status_and_updates_without_reload(browser, sqlite_db, sqlite_url):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    config = build_dashboard_fixture(sqlite_url, refresh_seconds=1)
    with ServerThread(create_app(config, clock=lambda: NOW)) as url:
        browser.get(url)
        wait = WebDriverWait(browser, 300, ignored_exceptions=[StaleElementReferenceException])
        cards = browser.find_elements(By.CSS_SELECTOR, '[data-items="keys"] > article.key')
        assert [c.find_element(By.CSS_SELECTOR, '[data-bind="label"]').text for c in cards] == LABELS
        badges = {b.text: b.get_attribute("class")
                  for b in browser.find_elements(By.CSS_SELECTOR, '[data-items="keys"] .badge')}
        assert badges == {"ACTIVE": "badge st-ok", "FRESH": "badge st-ok", "LOW": "badge st-warn",
                          "EXHAUSTED": "badge st-bad", "RATE_LIMITED": "badge st-cool", "INVALID": "badge st-bad",
                          "DISABLED": "badge st-off"}
        # The script runs and refreshes from the JSON endpoints.
        wait.until(lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-refreshes") or 0) >= 1)
        assert browser.find_element(By.ID, "refresh-state").text == "· live"
        wait.until(lambda d: d.execute_script(
            "const i = document.getElementById('chart-img'); return i.complete && i.naturalWidth > 0;"))

        browser.execute_script("window.tokenpoolNotReloaded = true;")
        card = browser.find_element(By.CSS_SELECTOR, '[data-id="key:pool-08"]')
        assert card.find_element(By.CSS_SELECTOR, ".badge").text == "FRESH"
        calls_before = browser.find_element(By.CSS_SELECTOR, '[data-stat="today.calls"]').text

        ChatState.create(bot="main", chat_id=4242, label="Alice", username="alice_w")
        record("pool-08", NOW - dt.timedelta(seconds=1), operation="browser-check", input_tokens=12_345,
               output_tokens=50, chat_id=4242)

        first_row = '[data-items="calls"] > tr:first-child'
        wait.until(lambda d: "browser-check" in d.find_element(By.CSS_SELECTOR, first_row).text)
        assert "Alice (@alice_w)" in browser.find_element(By.CSS_SELECTOR, first_row).text   # the chat, by name
        card = browser.find_element(By.CSS_SELECTOR, '[data-id="key:pool-08"]')
        wait.until(lambda d: card.find_element(By.CSS_SELECTOR, ".badge").text == "ACTIVE")
        assert card.find_element(By.CSS_SELECTOR, '[data-bind="used"]').text == "12,395"
        assert card.find_element(By.CSS_SELECTOR, ".badge").get_attribute("class") == "badge st-ok"
        assert "oc-ok" in browser.find_element(By.CSS_SELECTOR, first_row).get_attribute("class")
        calls_after = browser.find_element(By.CSS_SELECTOR, '[data-stat="today.calls"]').text
        assert int(calls_after.replace(",", "")) == int(calls_before.replace(",", "")) + 1
        assert browser.execute_script("return window.tokenpoolNotReloaded === true;")
        assert browser.execute_script("return performance.getEntriesByType('navigation').length;") == 1

        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
        problems = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
        assert problems == []


def test_login_in_the_browser(browser, sqlite_db, sqlite_url):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    token = "browser-login-token-4f9a"
    config = build_dashboard_fixture(sqlite_url, token=token, refresh_seconds=1)
    # Each submit loads a new page: an element looked up while the old one goes away is
    # stale or missing, so the waits look again until the new page answers.
    wait = WebDriverWait(browser, 300, ignored_exceptions=[NoSuchElementException, StaleElementReferenceException])
    with ServerThread(create_app(config, clock=lambda: NOW)) as url:
        browser.get(url)
        assert browser.current_url.endswith("/login")
        browser.find_element(By.ID, "token").send_keys("not-the-token")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        error = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, ".error").text)
        assert "not right" in error
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-refreshes") or 0) >= 1)
        assert len(browser.find_elements(By.CSS_SELECTOR, '[data-items="keys"] > article.key')) == len(LABELS)
        cookie = browser.get_cookie("tokenpool_dashboard")
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["value"] != token
        assert browser.execute_script("return document.cookie;") == ""      # not readable by scripts
        # The one refused login is the only console message (a 401 is logged by the browser).
        problems = [entry["message"] for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
        assert all("/login" in message and "401" in message for message in problems), problems


def test_phone_and_desktop_layouts_and_their_screenshots(browser, sqlite_db, sqlite_url):
    """A phone (390 px): keys first, nothing wider than the screen (tables scroll inside
    their box), the chart in its phone size. Screenshots of both widths go to tests/artifacts."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    config = build_dashboard_fixture(sqlite_url, refresh_seconds=60)
    ARTIFACTS.mkdir(exist_ok=True)
    charts_loaded = ("return Array.from(document.querySelectorAll('picture img'))"
                     ".every(i => i.complete && i.naturalWidth > 0);")
    with ServerThread(create_app(config, clock=lambda: NOW)) as url:
        browser.set_window_size(1440, 2600)
        browser.get(url)
        WebDriverWait(browser, 300).until(lambda d: d.execute_script(charts_loaded))
        assert "size=phone" not in browser.execute_script("return document.getElementById('chart-img').currentSrc;")
        browser.save_screenshot(str(ARTIFACTS / "dashboard-desktop.png"))
        for section in ("chart", "cost"):
            element = browser.find_element(By.ID, section)
            browser.execute_script("arguments[0].scrollIntoView();", element)
            element.screenshot(str(ARTIFACTS / f"dashboard-desktop-{section}.png"))

        browser.set_window_size(390, 844)
        browser.get(url)
        WebDriverWait(browser, 300).until(lambda d: d.execute_script(charts_loaded))
        width = browser.execute_script("return window.innerWidth;")
        assert browser.execute_script("return document.documentElement.scrollWidth;") <= width
        top = {section: browser.find_element(By.ID, section).location["y"] for section in ("keys", "summary", "calls")}
        assert top["keys"] < top["summary"] and top["keys"] < top["calls"]
        assert top["keys"] < 844                                   # on the first screen
        first_key = browser.find_element(By.CSS_SELECTOR, '[data-items="keys"] > article.key')
        assert first_key.location["y"] < 844 and first_key.size["width"] <= width
        # Compact key cards: the figures are tiles, three to a row, and two cards fit on one screen.
        tiles = [tile.location["y"] for tile in first_key.find_elements(By.CSS_SELECTOR, ".kv")[:4]]
        assert tiles[0] == tiles[1] == tiles[2] < tiles[3]
        assert first_key.size["height"] <= 844 / 2, first_key.size
        assert "size=phone" in browser.execute_script("return document.getElementById('chart-img').currentSrc;")
        assert "size=phone" in browser.execute_script("return document.getElementById('cost-img').currentSrc;")
        table = browser.find_element(By.CSS_SELECTOR, "#calls table")
        box = browser.find_element(By.CSS_SELECTOR, "#calls .scroll")
        assert box.size["width"] <= width and table.size["width"] >= box.size["width"]   # scrolls in its box
        browser.save_screenshot(str(ARTIFACTS / "dashboard-phone.png"))
        for section in ("summary", "calls", "chart", "cost"):        # the rest of the page, section by section
            element = browser.find_element(By.ID, section)
            browser.execute_script("arguments[0].scrollIntoView();", element)
            element.screenshot(str(ARTIFACTS / f"dashboard-phone-{section}.png"))
        problems = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
        assert problems == []
