"""Debian's headless Chromium driven by Selenium, for the app's pages in the Splunk Web stand-in."""

import os
import shutil

import pytest

from harness import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOTS = os.path.join(ROOT, "build", "screenshots")


def browser_missing():
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (requirements-dev.txt)"
    if not (CHROMIUM and CHROMEDRIVER):
        return "Debian's chromium and chromium-driver are not installed (dev/browser_deps.sh)"
    return None


def headless_chromium(window: str = "1280,1600", console_log: bool = False):
    """A started driver, or the test skipped (failed in CI) when the browser is missing; the caller quits it.
    ``console_log``: the page's console messages are kept for ``driver.get_log("browser")``."""
    missing = browser_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail("the browser test cannot be skipped in CI: " + missing)
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-proxy-server", "--window-size=" + window, "--disable-extensions"):
        options.add_argument(argument)
    if console_log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver
