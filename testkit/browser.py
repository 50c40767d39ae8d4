"""A headless Chromium for tests and benchmarks that look at the inspector page as a person would:
Debian's `chromium` driven through its own `chromedriver` (same package version, so they always
match) by Selenium. `scripts/dev.py` installs both where it can (root with apt-get); elsewhere
`missing()` says why there is no browser, for a clear skip."""

from __future__ import annotations

import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

__all__ = ["missing", "start_browser", "CHROMIUM", "CHROMEDRIVER"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
          "--disable-dev-shm-usage", "--disable-extensions", "--disable-sync", "--hide-scrollbars", "--force-device-scale-factor=1")


def missing() -> str | None:
    """Why no browser can run here, or None when one can."""
    for name, path in (("chromium", CHROMIUM), ("chromedriver (Debian package chromium-driver)", CHROMEDRIVER)):
        if not Path(path).exists():
            return f"no {name} at {path}: `python3 scripts/dev.py setup` installs it with apt-get when run as root"
    return None


def start_browser(width: int = 1280, height: int = 1000) -> webdriver.Chrome:
    """A new headless Chromium session (quit it with `.quit()`). Nothing but loopback is reached:
    background networking is off and the page under test loads nothing from elsewhere."""
    options = Options()
    options.binary_location = CHROMIUM
    for flag in _FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
