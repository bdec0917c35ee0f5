"""The home dashboard in headless Chromium (Debian's, driven by Playwright), on the real assistant
and ondol's embedded model: rooms and cards in Korean, a Korean command that turns the living-room
AC on at 24 °C (the card follows over server-sent events), then English labels and an English
command. Screenshots go to tests/artifacts/, and one to docs/images/dashboard.png.

`make test` installs chromium, fonts-noto-cjk and playwright; elsewhere this skips, saying what is
missing. Playwright's own browser download is never used: it launches /usr/bin/chromium."""

# The fixtures imported from tests/e2e/home_fixtures.py are parameters of the tests below:
# ruff: noqa: F811

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from ondol.server.dashboard import create_dashboard_app
from tests.e2e.home_fixtures import assistant, home  # noqa: F401  (pytest fixtures)
from tests.server_fixtures import ServerThread

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
DOCS_SHOT = ROOT / "docs" / "images" / "dashboard.png"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ASSISTANT_TIMEOUT_MS = 25_000  # one request to the embedded model on 2 shared cores, with margin

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make test installs it)")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (make test installs it: apt-get install chromium)",
                allow_module_level=True)


KEY = "거실-열쇠".encode().hex()


@pytest.fixture(scope="module")
def server(home, assistant):
    s = ServerThread(create_dashboard_app(home, assistant, api_key=KEY)).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with sync_api.sync_playwright() as p:
        # A persistent context on a fresh folder: no profile of the machine's user is read or written.
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True, viewport={"width": 1360, "height": 1000}, locale="ko-KR")
        yield context
        context.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # As a person opens it: the page sends the browser to /login, the key signs it in (an HttpOnly
    # session cookie; the script never holds the key), and the dashboard follows.
    browser.clear_cookies()
    page.goto(server.url)
    page.wait_for_url(f"{server.url}/login")
    page.fill("#key", KEY)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/")
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def card(page, device: str):
    return page.locator(f'.card[data-device="{device}"]')


def send(page, text: str) -> str:
    """Type ``text`` in the command box, press Enter, wait for the reply; returns it."""
    turns = page.locator(".conversation .turn")
    n = turns.count()
    page.fill("#command-text", text)
    page.press("#command-text", "Enter")
    reply = turns.nth(n).locator(".reply:not(.pending)")
    reply.wait_for(timeout=ASSISTANT_TIMEOUT_MS)
    assert turns.nth(n).locator(".you").inner_text() == text
    return reply.locator("p").first.inner_text()


def test_dashboard_in_korean_and_english(page, home):
    expect = sync_api.expect
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    home.apply([{"action": "turn_on", "target": {"device": d}} for d in ("light.master", "light.kids")], source="test")

    # Korean first: the demo home says language: ko. Every room, every device.
    expect(page.locator(".card")).to_have_count(len(home.spec.devices))
    expect(page.locator("html")).to_have_attribute("lang", "ko")
    expect(page.locator('.room[data-area="living_room"] h2 span')).to_have_text("거실")
    expect(page.locator('.room[data-area="utility_room"] h2 span')).to_have_text("다용도실")
    ac = card(page, "ac.living")
    expect(ac.locator(".name")).to_have_text("거실 에어컨")
    expect(ac.locator(".kind")).to_have_text("에어컨")
    expect(ac.locator(".state")).to_have_text("꺼짐")
    expect(card(page, "lock.front_door").locator(".state")).to_have_text("잠김")
    expect(page.locator("#live")).to_have_attribute("data-live", "live")  # subscribed before commanding

    reply = send(page, "거실 에어컨 24도로 맞춰줘")
    assert re.search("[가-힣]", reply), f"a Korean request gets a Korean reply, not {reply!r}"
    expect(ac).to_have_attribute("data-state-power", "on")
    expect(ac).to_have_attribute("data-state-target_temperature", "24")
    expect(ac.locator(".state")).to_have_text("켜짐 · 24 °C")
    expect(ac).to_have_class(re.compile(r"\bactive\b"))
    assert home.state("ac.living")["power"] == "on"
    newest = page.locator("#audit li").first
    expect(newest.locator(".what")).to_have_text("거실 에어컨 24도로 맞춰줘")
    expect(newest.locator(".badge")).to_have_text("완료")
    DOCS_SHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=DOCS_SHOT)
    page.screenshot(path=ARTIFACTS / "dashboard-ko.png", full_page=True)

    # English labels, and an English command.
    page.click('.lang button[data-lang="en"]')
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator('.room[data-area="living_room"] h2 span')).to_have_text("living room")
    expect(ac.locator(".name")).to_have_text("living room AC")
    expect(ac.locator(".state")).to_have_text("On · 24 °C")
    expect(page.locator("#command-send")).to_have_text("Send")
    master, kids = card(page, "light.master"), card(page, "light.kids")
    expect(master).to_have_attribute("data-state-power", "on")

    reply = send(page, "turn off the master bedroom light")
    assert reply and not re.search("[가-힣]", reply), f"an English request gets an English reply, not {reply!r}"
    expect(master).to_have_attribute("data-state-power", "off")
    expect(master.locator(".state")).to_have_text("Off")
    expect(kids).to_have_attribute("data-state-power", "on")  # the other bedroom was not asked about
    expect(page.locator("#audit li").first.locator(".what")).to_have_text("turn off the master bedroom light")
    page.screenshot(path=ARTIFACTS / "dashboard-en.png", full_page=True)

    # A phone-width screen: one column, the command box first, the cards still readable.
    page.set_viewport_size({"width": 390, "height": 844})
    box, rooms = page.locator("#command").bounding_box(), page.locator("#rooms").bounding_box()
    assert box["y"] < rooms["y"] and box["width"] < 390 and rooms["width"] <= 390
    page.screenshot(path=ARTIFACTS / "dashboard-phone.png")


def test_live_updates_and_card_buttons(page, home):
    """A change from elsewhere (another client, a device over MQTT) reaches the card and flashes it;
    a card's button applies its action and shows in the log."""
    expect = sync_api.expect
    expect(page.locator("#live")).to_have_attribute("data-live", "live")
    home.apply({"action": "set_channel", "target": {"device": "tv.living"}, "params": {"channel": 7}}, source="test")
    tv = card(page, "tv.living")
    expect(tv).to_have_attribute("data-state-channel", "7")
    expect(tv).to_have_class(re.compile(r"\bflash\b"))
    fan = card(page, "switch.bathroom_fan")
    before = home.state("switch.bathroom_fan")["power"]
    fan.locator("button.control").click()
    after = "off" if before == "on" else "on"
    expect(fan).to_have_attribute("data-state-power", after)
    assert home.state("switch.bathroom_fan")["power"] == after
    expect(page.locator("#audit li").first.locator(".source")).to_have_text("dashboard")
