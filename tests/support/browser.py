"""Headless Debian Chromium driven by Selenium, and the live proxy it browses.

The browser and its driver come from Debian's chromium and chromium-driver packages
(`scripts/ensure-test-packages` installs them under `make test`); nothing is downloaded at run time.
Screenshots go to TEST_ARTIFACTS_DIR, or .run/test-artifacts/browser in the checkout.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

# The live proxy (uvicorn in a thread) and the fake Anthropic upstream it calls.

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[2]
# Generous for a page from 127.0.0.1, short enough that a broken page fails the test quickly.
WAIT_SECONDS = 10
CHROMIUM_FLAGS = (
    "--headless=new",
    # Chromium refuses to run as root with its sandbox, which containers often cannot give it.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # The test machine reaches no network but 127.0.0.1: no updates, sync or other chatter.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,2000",
)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    directory = Path(
        os.environ.get("TEST_ARTIFACTS_DIR") or ROOT / ".run" / "test-artifacts" / "browser"
    )
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not found: the browser tests need Debian's chromium and "
            "chromium-driver: apt-get install chromium chromium-driver"
        )
    # The driver's path is given below; this keeps Selenium Manager from ever fetching one.
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=os.devnull)
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()
