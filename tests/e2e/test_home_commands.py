"""POST /v1/homes/{home}/commands and GET .../audit over HTTP, with the real assistant on ondol's
embedded model: Korean and English requests, dry runs, malformed bodies, no assistant (503), and
the audit log newest first."""

# The fixtures imported from tests/e2e/home_fixtures.py are parameters of the tests below:
# ruff: noqa: F811

from __future__ import annotations

import re
import threading

import httpx
import pytest

from ondol import LLM
from ondol.home.home import Home
from ondol.server.dashboard import create_dashboard_app
from ondol.server import create_app
from tests.e2e.home_fixtures import DEMO, assistant, home  # noqa: F401  (pytest fixtures)
from tests.server_fixtures import TEST_KV_BYTES, ServerThread

HANGUL = re.compile("[가-힣]")


def _client(home, assistant):
    server = ServerThread(create_dashboard_app(home, assistant)).start()
    with httpx.Client(base_url=f"{server.url}/v1/homes/demo", timeout=60) as client:
        yield client
    server.stop()


@pytest.fixture(scope="module")
def http(home, assistant):
    yield from _client(home, assistant)


@pytest.fixture(scope="module")
def bare_http(home):
    """The same routes without an assistant: what does not reach it runs even before it exists."""
    yield from _client(home, None)


def command(http, text: str, **extra) -> dict:
    r = http.post("/commands", json={"text": text, **extra})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"actions", "reply", "answer"}  # the stable shape, nothing more
    return body


def test_korean_command(http, home):
    home.apply({"action": "turn_off", "target": {"device": "ac.living"}}, source="test")
    body = command(http, "거실 에어컨 24도로 맞춰줘")
    assert {"device": "ac.living", "action": "set_temperature", "params": {"temperature": 24}} in body["actions"]
    state = home.state("ac.living")
    assert state["target_temperature"] == 24
    assert HANGUL.search(body["reply"]), body["reply"]  # answered in the language it was asked in
    newest = http.get("/audit", params={"limit": 1}).json()["data"][0]
    assert newest["utterance"] == "거실 에어컨 24도로 맞춰줘" and newest["ok"]


def test_english_command(http, home):
    home.apply({"action": "turn_on", "target": {"device": "light.master"}}, source="test")
    body = command(http, "turn off the master bedroom light", source="test-en")
    assert any(a["device"] == "light.master" and a["action"] == "turn_off" for a in body["actions"]), body
    assert home.state("light.master")["power"] == "off"
    assert body["reply"] and not HANGUL.search(body["reply"]), body["reply"]
    newest = http.get("/audit", params={"limit": 1}).json()["data"][0]
    assert (newest["source"], newest["utterance"]) == ("test-en", "turn off the master bedroom light")


def test_dry_run_changes_nothing(http, home):
    home.apply({"action": "turn_off", "target": {"device": "light.living_main"}}, source="test")
    before = home.query()
    body = command(http, "거실 조명 켜줘", dry_run=True)
    assert any(a["device"] == "light.living_main" and a["action"] == "turn_on" for a in body["actions"]), body
    assert home.query() == before


@pytest.mark.parametrize("content", [
    b"{}", b'{"text": ""}', b'{"text": 5}', b'{"text": "' + b"x" * 1001 + b'"}',
    b'{"text": "\xea\xb1\xb0\xec\x8b\xa4 \xeb\xb6\x88 \xec\xbc\x9c\xec\xa4\x98", "dry_run": "maybe"}',
    b'{"text": "unterminated', b"\xff\xfe not utf-8", b"[]",
])
def test_malformed_bodies_are_400(bare_http, content):  # refused before the assistant is asked
    r = bare_http.post("/commands", content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["message"], r.text


def test_unknown_home_is_404(bare_http):
    r = bare_http.post(str(bare_http.base_url).replace("/demo/", "/elsewhere/") + "commands", json={"text": "불 켜줘"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "home_not_found"


def test_audit_newest_first(bare_http, home):
    http = bare_http
    home.apply({"action": "turn_on", "target": {"device": "욕실 환풍기"}}, source="test", utterance="환풍기 켜")
    r = http.post("/actions", json={"actions": [
        {"action": "set_temperature", "target": {"device": "거실 에어컨"}, "params": {"temperature": 99}}],
        "utterance": "에어컨 99도"})
    assert r.status_code == 400
    rows = http.get("/audit", params={"limit": 5}).json()["data"]
    assert [r["seq"] for r in rows] == sorted((r["seq"] for r in rows), reverse=True)
    refused = rows[0]
    assert (refused["utterance"], refused["ok"], refused["source"]) == ("에어컨 99도", False, "api")
    assert "16 to 30" in refused["error"] and refused["time"].endswith("+00:00")
    applied = http.get("/audit", params={"limit": 2}).json()["data"]
    assert len(applied) == 2 and (applied[1]["utterance"], applied[1]["ok"]) == ("환풍기 켜", True)
    for bad in ("0", "501", "many"):
        assert http.get("/audit", params={"limit": bad}).status_code == 400


def test_no_assistant_is_503(tmp_path, tiny_model_dir):
    """Neither the dashboard without an assistant nor `ondol serve --home` answers commands; the
    model server's home routes still work while its model loads (no wait for /commands' 503)."""
    release = threading.Event()

    def slow_model() -> LLM:
        release.wait(30)
        return LLM(tiny_model_dir, kv_cache_bytes=TEST_KV_BYTES)

    with Home.load(DEMO, store=f"sqlite:///{tmp_path / 'h.db'}") as bare:
        for app in (create_dashboard_app(bare, None), create_app(slow_model, home=bare)):
            s = ServerThread(app).start(wait_ready=False)
            try:
                r = httpx.post(f"{s.url}/v1/homes/demo/commands", json={"text": "거실 불 켜줘"}, timeout=30)
                assert r.status_code == 503 and r.json()["error"]["code"] == "assistant_unavailable", r.text
                assert "POST /v1/homes/{home}/actions" in r.json()["error"]["message"]
                assert bare.state("light.living_main")["power"] == "off"
            finally:
                release.set()
                s.stop()


def test_model_server_with_an_assistant(tmp_path, tiny_model_dir, home, assistant):
    """`create_app(..., home=, assistant=)`: /commands answers beside the OpenAI routes, before
    the server's own model is ready (the assistant has its own)."""
    release = threading.Event()

    def slow_model() -> LLM:
        release.wait(30)
        return LLM(tiny_model_dir, kv_cache_bytes=TEST_KV_BYTES)

    s = ServerThread(create_app(slow_model, home=home, assistant=assistant)).start(wait_ready=False)
    try:
        r = httpx.post(f"{s.url}/v1/homes/demo/commands", json={"text": "거실 조명 켜줘", "dry_run": True}, timeout=60)
        assert r.status_code == 200 and set(r.json()) == {"actions", "reply", "answer"}, r.text
        assert httpx.get(f"{s.url}/v1/models").status_code == 503  # the model is still loading
    finally:
        release.set()
        s.stop()


def test_dashboard_page_and_api_key(home):
    """With a key, only /health and /login are open: a browser is sent to the login page, an API
    client gets 401; the key as a bearer token opens everything (page, script, routes)."""
    key = "열쇠-key".encode().hex()
    s = ServerThread(create_dashboard_app(home, None, api_key=key)).start()
    try:
        auth = {"Authorization": f"Bearer {key}"}
        browser = httpx.get(s.url, headers={"Accept": "text/html"})
        assert browser.status_code == 303 and browser.headers["location"] == "/login"
        assert httpx.get(f"{s.url}/login").status_code == 200
        assert httpx.get(s.url).status_code == 401 and httpx.get(f"{s.url}/static/app.js").status_code == 401
        page = httpx.get(s.url, headers=auth)
        assert page.status_code == 200 and 'lang="ko"' in page.text and "needsKey" not in page.text
        assert httpx.get(f"{s.url}/static/app.js", headers=auth).status_code == 200
        assert httpx.get(f"{s.url}/health").json() == {"status": "ok", "home": "demo", "assistant": "none"}
        assert httpx.get(f"{s.url}/v1/homes/demo/audit").status_code == 401
        ok = httpx.get(f"{s.url}/v1/homes/demo/audit", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200 and ok.json()["object"] == "list"
    finally:
        s.stop()
