"""The inspector page, used as a person would in headless Chromium: sign in with a token, find a
session in the list, open it, read the items of its last prompt (why, score, tokens, text) and
where its decision came from, see its cost chart, and erase another session (cancelling first).
Signed in as one caller (a tenant's token, or an API key) the page shows that caller's sessions
and nothing of another's, even by its id; signed in as the operator it shows every session with
its owner. Credentials live in the page's memory only. Saves `benchmarks/inspector.png` for the
README. Skipped, with the reason, only where no browser can be installed (`scripts/dev.py`
installs Debian's chromium and chromedriver when run as root)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit import browser
from testkit.harness import Proxy

if (reason := browser.missing()) is not None:
    pytest.skip(f"no headless browser: {reason}", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402  (after the skip: selenium needs no browser, the test does)
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "benchmarks" / "inspector.png"
TOKEN = "browser-operator-token-5e1d"
TEAM = "browser-tenant-team-token-77c2"
ALICE = "browser-tenant-alice-token-0b9e"
KEY_A = "sk-browser-caller-alpha-" + "a" * 20
KEY_B = "sk-browser-caller-bravo-" + "b" * 20
# How long a wait for the page to draw something may take: each returns once it is drawn, so the
# bound only matters to a loaded machine (headless Chromium on 2 busy cores takes seconds).
WAIT_S = 60
MODEL = "gpt-4o-mini"
SYSTEM = "You help the team maintain the ledger importer. Answer briefly and keep decisions explicit. " * 70
QUESTIONS = [
    "Decision: the importer reads CSV files with a header row\nConstraint: amounts are integers in cents",
    "How should we treat rows without a date?",
    "Open: do we need to support semicolon separators?",
    "Decision (dates): rows without a date are rejected with a line number",
    "What did we decide about amounts?",
    "Here is the parser:\n```python\n# importer/parse.py\ndef parse(row):\n    date, amount = row\n    return date, int(amount)\n```",
    "Glossary: cents - the integer unit every amount is stored in",
    "Summarise the rules for a new teammate.",
]


@pytest.fixture(scope="module")
def inspected(proxy_factory: Callable[..., Proxy]) -> Proxy:
    proxy = proxy_factory(f"upstreams: {{retries: 0}}\nserver: {{access_token: {TOKEN}}}\n"
                          f"tenants: [{{name: team, token: {TEAM}}}, {{name: alice, token: {ALICE}}}]\n")
    client = proxy.client(default_headers={"X-Memory-Session": "ledger-importer", "X-Memory-Budget": "2200",
                                           "X-Memory-Access-Token": TEAM})
    history: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    for i, question in enumerate(QUESTIONS):
        history.append({"role": "user", "content": question + "\n" + f"(context for step {i}: " + "ledger rows and totals " * 20 + ")"})
        reply = client.chat.completions.create(model=MODEL, messages=history).choices[0].message.content or ""
        history.append({"role": "assistant", "content": reply})
    other = proxy.client(default_headers={"X-Memory-Session": "scratch-to-erase", "X-Memory-Access-Token": TEAM})
    other.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a throwaway chat"}])
    alice = proxy.client(default_headers={"X-Memory-Session": "alice-private", "X-Memory-Access-Token": ALICE})
    alice.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Decision: alice's secret word is qzalicesecret"}])
    return proxy


@pytest.fixture(scope="module")
def keyed(proxy_factory: Callable[..., Proxy]) -> Proxy:
    """No tokens: two callers told apart by their API keys."""
    proxy = proxy_factory()
    for key, session, word in ((KEY_A, "alpha-notes", "qzalphaword"), (KEY_B, "bravo-notes", "qzbravoword")):
        client = proxy.client(api_key=key, default_headers={"X-Memory-Session": session})
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"Decision: the word is {word}"}])
    return proxy


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    chrome = browser.start_browser(1280, 1000)
    try:
        yield chrome
    finally:
        chrome.quit()


def _api(proxy: Proxy, path: str, token: str = TEAM) -> httpx.Response:
    return httpx.get(proxy.url + path, headers={"X-Memory-Access-Token": token}, timeout=10)


def _loaded(driver: WebDriver, what: str) -> None:
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == what)


def _fresh(driver: WebDriver, proxy: Proxy) -> str:
    """Open the page as a new document (a hash change alone would keep the page's memory); returns
    what it drew first ("list", or "error" where credentials are needed), once drawn."""
    driver.get("about:blank")
    driver.get(proxy.url + "/memory/ui")
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") in ("list", "error"))
    return str(driver.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))


def _sign_in(driver: WebDriver, *, token: str = "", key: str = "") -> str:
    """Type the credentials and sign in; returns what the page says it is signed in as, once the
    session list has been drawn again for them."""
    for field, value in (("token", token), ("apikey", key)):
        box = driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    # Mark what is on screen as stale, so the waits below see the page drawn for the new identity.
    driver.execute_script("document.body.dataset.loaded = 'stale'; document.getElementById('whoami').textContent = ''")
    driver.find_element(By.CSS_SELECTOR, "#credentials button").click()
    _loaded(driver, "list")
    return str(driver.find_element(By.ID, "whoami").text)


def _open(driver: WebDriver, proxy: Proxy, session: str, token: str = TEAM) -> None:
    """A fresh page, signed in with `token`, showing `session`."""
    _fresh(driver, proxy)
    _sign_in(driver, token=token)
    _go(driver, "#/s/" + session, "session")


def _go(driver: WebDriver, hash_: str, expect: str) -> None:
    """Navigate inside the page and wait until it has drawn `expect` ("list", "session", "error")."""
    driver.execute_script("document.body.dataset.loaded = 'stale'; location.hash = arguments[0]", hash_)
    _loaded(driver, expect)


def _listed(driver: WebDriver) -> list[str]:
    # One script call reads the whole list at once: no element can go stale between finding and reading.
    found: list[str] = driver.execute_script("return [...document.querySelectorAll('#sessions a.session-link')].map(a => a.textContent)")
    return found


def test_list_search_and_open_a_session(inspected: Proxy, driver: WebDriver) -> None:
    assert _fresh(driver, inspected) == "error"  # no token yet: the data routes answer 401 and the page says so
    assert "access token" in driver.find_element(By.ID, "notice").text
    assert driver.find_element(By.ID, "whoami").text == "not signed in"
    assert _sign_in(driver, token=TEAM) == "signed in as tenant team"
    assert set(_listed(driver)) == {"ledger-importer", "scratch-to-erase"}  # alice's session is not the team's
    assert "2 sessions" in driver.find_element(By.ID, "usage").text
    driver.find_element(By.ID, "search").send_keys("ledger")
    driver.execute_script("document.body.dataset.loaded = 'stale'")
    driver.find_element(By.CSS_SELECTOR, "#search-form button").click()
    _loaded(driver, "list")
    assert _listed(driver) == ["ledger-importer"]
    driver.find_element(By.LINK_TEXT, "ledger-importer").click()
    _loaded(driver, "session")
    assert driver.find_element(By.TAG_NAME, "h1").text == "ledger-importer"
    # The credentials live in the page's memory only: nothing stored, and a reload forgets them.
    stored = driver.execute_script("return [localStorage.length, sessionStorage.length, document.cookie]")
    assert stored == [0, 0, ""]
    driver.refresh()
    _loaded(driver, "error")
    assert driver.find_element(By.ID, "whoami").text == "not signed in"


def test_a_tenant_never_sees_another_tenants_session(inspected: Proxy, driver: WebDriver) -> None:
    _fresh(driver, inspected)
    assert _sign_in(driver, token=ALICE) == "signed in as tenant alice"
    assert _listed(driver) == ["alice-private"]
    for name in ("ledger-importer", "t_team/ledger-importer"):
        _go(driver, "#/s/" + name, "error")
        assert "(404)" in driver.find_element(By.ID, "notice").text
        assert "Summarise the rules" not in driver.find_element(By.TAG_NAME, "body").text
    _go(driver, "#/?q=ledger", "list")
    assert _listed(driver) == []


def test_the_operator_sees_every_session_with_its_owner(inspected: Proxy, driver: WebDriver) -> None:
    _fresh(driver, inspected)
    assert _sign_in(driver, token=TOKEN) == "signed in as operator (every session)"
    rows = {tuple(td.text for td in tr.find_elements(By.TAG_NAME, "td")[:2]) for tr in driver.find_elements(By.CSS_SELECTOR, "#sessions tbody tr")}
    assert rows == {("t_alice/alice-private", "t_alice"), ("t_team/ledger-importer", "t_team"), ("t_team/scratch-to-erase", "t_team")}
    driver.find_element(By.LINK_TEXT, "t_alice/alice-private").click()
    _loaded(driver, "session")
    assert driver.find_element(By.TAG_NAME, "h1").text == "t_alice/alice-private"
    assert "qzalicesecret" in driver.find_element(By.ID, "state").text


def test_an_api_key_shows_that_callers_sessions_only(keyed: Proxy, driver: WebDriver) -> None:
    assert _fresh(driver, keyed) == "list"  # no tokens configured: the page's own origin reads as the keyless caller
    assert driver.find_element(By.ID, "whoami").text == "signed in as no key (local)"
    assert _listed(driver) == []
    for key, mine, theirs in ((KEY_A, "alpha-notes", "bravo-notes"), (KEY_B, "bravo-notes", "alpha-notes")):
        assert _sign_in(driver, key=key) == "signed in as API key " + httpx.get(
            keyed.url + "/memory/whoami", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()["principal"]
        assert _listed(driver) == [mine]
        _go(driver, "#/s/" + theirs, "error")
        assert "(404)" in driver.find_element(By.ID, "notice").text
        _go(driver, "#/s/" + mine, "session")
        assert ("qzalphaword" if key == KEY_A else "qzbravoword") in driver.find_element(By.ID, "state").text


def test_read_the_last_prompt_its_sources_and_its_cost(inspected: Proxy, driver: WebDriver) -> None:
    _open(driver, inspected, "ledger-importer")
    prompt = _api(inspected, "/memory/sessions/ledger-importer/prompt").json()
    items = driver.find_elements(By.CSS_SELECTOR, "#included > li")
    assert len(items) == len(prompt["included"]) and len(items) > 3
    for item, expected in zip(items, prompt["included"], strict=True):
        meta = item.find_element(By.CSS_SELECTOR, ".meta").text
        assert expected["reason"] in meta and f"{expected['tokens']:,} tokens" in meta
        if expected.get("score") is not None:
            assert f"score {expected['score']:.3f}" in meta
        if expected.get("text"):
            assert item.find_element(By.CSS_SELECTOR, "pre").text.startswith(expected["text"][:40].strip())
    assert items[-1].find_element(By.CSS_SELECTOR, ".badge").text == "live_tail"
    assert "Summarise the rules" in items[-1].text
    assert f"mode {prompt['mode']}" in driver.find_element(By.CSS_SELECTOR, "#prompt .facts").text
    # A decision, and the event it came from.
    decision = next(li for li in driver.find_elements(By.CSS_SELECTOR, "#state .state-item") if "rejected with a line number" in li.text)
    decision.find_element(By.CSS_SELECTOR, "button").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: decision.find_elements(By.CSS_SELECTOR, ".sources .event"))
    assert "Decision (dates)" in decision.find_element(By.CSS_SELECTOR, ".sources .event").text
    # Cost: the totals and one line per series over the turns.
    turns = _api(inspected, "/memory/sessions/ledger-importer/turns").json()["data"]
    totals = driver.find_element(By.ID, "cost-totals").text
    assert f"{sum(t['forwarded_tokens'] for t in turns):,}" in totals
    assert len(driver.find_elements(By.CSS_SELECTOR, "#cost svg polyline")) == 3
    # An artifact version opens with its content.
    driver.find_element(By.CSS_SELECTOR, "#artifacts button.version").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: "def parse(row)" in d.find_element(By.ID, "artifact-content").text)
    driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 2600)")
    driver.set_window_size(1280, height)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(SCREENSHOT))
    driver.set_window_size(1280, 1000)


def test_erase_asks_first(inspected: Proxy, driver: WebDriver) -> None:
    _open(driver, inspected, "scratch-to-erase")
    dialog = driver.find_element(By.ID, "confirm")
    driver.find_element(By.ID, "erase").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: dialog.get_attribute("open") is not None)
    assert "scratch-to-erase" in driver.find_element(By.ID, "confirm-text").text
    driver.find_element(By.ID, "confirm-cancel").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: dialog.get_attribute("open") is None)
    assert _api(inspected, "/memory/sessions/scratch-to-erase").status_code == 200
    driver.find_element(By.ID, "erase").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: dialog.get_attribute("open") is not None)
    driver.find_element(By.ID, "confirm-ok").click()
    _loaded(driver, "list")
    assert "erased" in driver.find_element(By.ID, "notice").text
    assert _api(inspected, "/memory/sessions/scratch-to-erase").status_code == 404
    assert "scratch-to-erase" not in _listed(driver)


def test_export_asks_first(inspected: Proxy, driver: WebDriver) -> None:
    _open(driver, inspected, "ledger-importer")
    driver.find_element(By.ID, "export").click()
    dialog = driver.find_element(By.ID, "confirm")
    WebDriverWait(driver, WAIT_S).until(lambda d: dialog.get_attribute("open") is not None)
    driver.find_element(By.ID, "confirm-cancel").click()
    assert driver.find_element(By.ID, "notice").get_attribute("hidden") is not None
    driver.find_element(By.ID, "export").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: dialog.get_attribute("open") is not None)
    driver.find_element(By.ID, "confirm-ok").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: "exported" in d.find_element(By.ID, "notice").text)


def test_a_failing_click_shows_its_error(inspected: Proxy, driver: WebDriver) -> None:
    """The three in-page loads (a state item's sources, an artifact version, older events) show a
    failed request in the notice instead of doing nothing."""
    _open(driver, inspected, "ledger-importer")
    # The credentials go stale behind the page's back (a revoked token): every request now gets a 401.
    driver.execute_script("credentials.token = 'revoked-token-0000'")
    for selector in ("#state .state-item button", "#artifacts button.version"):
        driver.execute_script("document.getElementById('notice').textContent = ''")
        driver.find_element(By.CSS_SELECTOR, selector).click()
        WebDriverWait(driver, WAIT_S).until(lambda d: "not allowed" in d.find_element(By.ID, "notice").text)
        assert driver.find_element(By.ID, "notice").get_attribute("class") == "error"
    # "Older events" is enabled only when there are more; make it clickable to fail the same way.
    driver.execute_script("const b = document.getElementById('older'); b.disabled = false; "
                          "document.getElementById('notice').textContent = ''")
    driver.find_element(By.ID, "older").click()
    WebDriverWait(driver, WAIT_S).until(lambda d: "not allowed" in d.find_element(By.ID, "notice").text)
