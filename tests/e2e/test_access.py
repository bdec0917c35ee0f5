"""Who may call ondol's servers (ondol/server/shell.py, ondol/server/keys.py): the cross-site
unlock an attacker's page could do, Host and Origin checks, the key on every route (walked from
each app's route table, so a new route cannot be forgotten), the login page and its session
cookie, one-time links, body limits, and where keys come from."""

# ruff: noqa: F811

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import subprocess
import sys
import time

import httpx
import pytest

from ondol import LLM
from ondol.errors import InvalidRequestError
from ondol.home.home import Home
from ondol.server import create_app
from ondol.server.dashboard import create_dashboard_app
from ondol.server.keys import ENV_VAR, key_path_for, resolve_key
from ondol.server.shell import SESSION_COOKIE, Access, guarded_routes
from tests.e2e.home_fixtures import DEMO, home  # noqa: F401  (pytest fixtures)
from tests.server_fixtures import TEST_KV_BYTES, ServerThread, free_port

KEY = "문-열쇠".encode().hex()
AUTH = {"Authorization": f"Bearer {KEY}"}
UNLOCK = {"actions": [{"action": "unlock", "target": {"device": "lock.front_door"}}]}


@pytest.fixture(scope="module")
def dash(home):
    s = ServerThread(create_dashboard_app(home, None, access=Access(api_key=KEY, host="127.0.0.1"))).start()
    yield s
    s.stop()


def _front_door(home) -> str:
    return home.state("lock.front_door")["lock_state"]


def test_the_cross_site_unlock_is_refused_before_parsing(dash, home):
    """The attack from the issue: a page on another origin sends text/plain (no CORS preflight)
    to /actions. Refused with 403 whether or not the browser attached a session cookie; the door
    stays locked and no audit row is written."""
    before, seq = _front_door(home), home.store.last_seq(home.id)
    cookie = _login(dash.url)
    attack = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
    for headers in (attack, {**attack, "Cookie": f"{SESSION_COOKIE}={cookie}"}, {**attack, **AUTH},
                    {"Origin": "null", "Content-Type": "application/json", **AUTH},
                    {"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json", **AUTH}):
        r = httpx.post(f"{dash.url}/v1/homes/demo/actions", content=json.dumps(UNLOCK).encode(),
                       headers=headers)
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_origin", (headers, r.text)
    # Same origin, right key, but not JSON: 415, still nothing parsed.
    r = httpx.post(f"{dash.url}/v1/homes/demo/actions", content=b"{}", headers={**AUTH, "Content-Type": "text/plain",
                                                                                 "Origin": dash.url})
    assert r.status_code == 415
    assert _front_door(home) == before == "locked" and home.store.last_seq(home.id) == seq
    # The dashboard's own origin with its cookie may act (and that is audited).
    ok = httpx.post(f"{dash.url}/v1/homes/demo/actions", json={**UNLOCK, "source": "dashboard"},
                    headers={"Origin": dash.url, "Cookie": f"{SESSION_COOKIE}={cookie}"})
    assert ok.status_code == 200 and _front_door(home) == "unlocked" and home.store.last_seq(home.id) == seq + 1
    home.apply([{"action": "lock", "target": {"device": "lock.front_door"}}], source="test")


def test_host_header_must_name_this_server(dash):
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: its Host is refused."""
    for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example"):
        r = httpx.get(f"{dash.url}/health", headers={"Host": host})
        assert r.status_code == 403 and r.json()["error"]["code"] == "host_not_allowed", host
    for host in (f"127.0.0.1:{dash.port}", f"localhost:{dash.port}", f"[::1]:{dash.port}"):
        assert httpx.get(f"{dash.url}/health", headers={"Host": host}).status_code == 200, host


def _login(url: str) -> str:
    r = httpx.post(f"{url}/login", json={"key": KEY})
    assert r.status_code == 204, r.text
    header = r.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=strict" in header and "Path=/" in header, header
    return re.match(f"{SESSION_COOKIE}=([^;]+)", header).group(1)


def test_login_page_cookie_and_one_time_link(dash):
    assert httpx.get(f"{dash.url}/login").status_code == 200
    assert "API 키" in httpx.get(f"{dash.url}/login").text  # the login page speaks Korean and English
    wrong = httpx.post(f"{dash.url}/login", json={"key": "guess"})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    assert httpx.post(f"{dash.url}/login", json={}).status_code == 400
    cookie = {"Cookie": f"{SESSION_COOKIE}={_login(dash.url)}"}
    assert httpx.get(dash.url, headers=cookie).status_code == 200
    assert httpx.get(f"{dash.url}/v1/homes/demo/devices", headers=cookie).status_code == 200
    forged = {"Cookie": f"{SESSION_COOKIE}={int(time.time())}.{'0' * 64}"}
    assert httpx.get(f"{dash.url}/v1/homes/demo/devices", headers=forged).status_code == 401
    old = {"Cookie": f"{SESSION_COOKIE}=1.{'0' * 64}"}
    assert httpx.get(f"{dash.url}/v1/homes/demo/devices", headers=old).status_code == 401
    with httpx.stream("GET", f"{dash.url}/v1/homes/demo/events", headers=cookie, timeout=10) as events:
        assert events.status_code == 200  # EventSource sends the cookie, not a header

    token = dash.app.state.sessions.one_time_token()
    first = httpx.get(f"{dash.url}/login?once={token}")
    assert first.status_code == 303 and first.headers["location"] == "/" and SESSION_COOKIE in first.headers["set-cookie"]
    again = httpx.get(f"{dash.url}/login?once={token}")
    assert again.status_code == 401 and "set-cookie" not in again.headers  # single use


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "demo", path)


def _walk_routes(s: ServerThread) -> int:
    """Every route of the app, without a key: 401 (never the route's own answer); with it: not 401."""
    routes = guarded_routes(s.app)
    documented = {(m.upper(), p) for p, ops in s.app.openapi()["paths"].items() for m in ops}
    open_paths = s.app.state.access.open_paths()
    walked = {(m, re.sub(r":[^}]+}", "}", p)) for m, p in routes}  # {name:path} is documented as {name}
    assert {(m, p) for m, p in documented if p not in open_paths} <= walked  # the walk misses nothing documented
    for method, path in routes:
        url = f"{s.url}{_fill(path)}" + ("/app.js" if path == "/static" else "")
        r = httpx.request(method, url, json={} if method in ("POST", "PUT", "PATCH") else None, timeout=30)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", (method, path, r.text)
        if not path.endswith("/events"):
            authed = httpx.request(method, url, json={} if method == "POST" else None, headers=AUTH, timeout=30)
            assert authed.status_code != 401, (method, path)
    return len(routes)


def test_every_route_of_both_servers_needs_the_key(home, tiny_model_dir):
    dash = ServerThread(create_dashboard_app(home, None, api_key=KEY)).start()
    try:
        paths = {p for _, p in guarded_routes(dash.app)}
        assert {"/", "/static", "/v1/homes/{name}/actions", "/docs", "/openapi.json", "/redoc"} <= paths
        _walk_routes(dash)
    finally:
        dash.stop()
    llm = LLM(tiny_model_dir, kv_cache_bytes=TEST_KV_BYTES)
    model = ServerThread(create_app(llm, served_model_name="tiny", api_key=KEY, home=home)).start()
    try:
        paths = {p for _, p in guarded_routes(model.app)}
        assert {"/metrics", "/v1/chat/completions", "/v1/models", "/v1/homes/{name}/commands", "/docs"} <= paths
        _walk_routes(model)
        assert httpx.get(f"{model.url}/health").status_code == 200
    finally:
        model.stop()


def test_metrics_open_only_when_asked(tiny_model_dir):
    llm = LLM(tiny_model_dir, kv_cache_bytes=TEST_KV_BYTES)
    s = ServerThread(create_app(llm, access=Access(api_key=KEY, open_metrics=True))).start()
    try:
        assert httpx.get(f"{s.url}/metrics").status_code == 200
        assert httpx.get(f"{s.url}/v1/models").status_code == 401
    finally:
        s.stop()


def test_body_limits(home):
    s = ServerThread(create_dashboard_app(home, None, access=Access(api_key=KEY, max_body_bytes=4096))).start()
    try:
        big = b'{"actions": [' + b" " * 5000 + b"]}"
        r = httpx.post(f"{s.url}/v1/homes/demo/actions", content=big, headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

        def chunks():  # no Content-Length: counted as it streams in
            for _ in range(10):
                yield b" " * 1000

        r = httpx.post(f"{s.url}/v1/homes/demo/actions", content=chunks(),
                       headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 413, r.text
    finally:
        s.stop()


# --- where keys come from ---------------------------------------------------------------------------

def _args(**kw) -> argparse.Namespace:
    base = {"api_key": None, "api_key_file": None, "no_auth": False, "host": "127.0.0.1"}
    return argparse.Namespace(**{**base, **kw})


def test_key_sources(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    at = tmp_path / "homes" / "h.api-key"
    made = resolve_key(_args(), generate_at=at)
    assert made.generated and len(made.key) >= 40 and stat.S_IMODE(at.stat().st_mode) == 0o600
    again = resolve_key(_args(), generate_at=at)
    assert again.key == made.key and not again.generated  # the next start finds the same key
    assert resolve_key(_args(), generate_at=None).key is None  # plain `ondol serve`: no key unless given
    monkeypatch.setenv(ENV_VAR, "  from-env  ")
    assert resolve_key(_args(), generate_at=at).key == "from-env"
    assert resolve_key(_args(api_key="flag"), generate_at=at).key == "flag"  # the flag wins
    f = tmp_path / "key.txt"
    f.write_text("from-file\n")
    os.chmod(f, 0o600)
    assert resolve_key(_args(api_key_file=str(f)), generate_at=at).key == "from-file"
    os.chmod(f, 0o644)
    with pytest.raises(InvalidRequestError, match="chmod 600"):
        resolve_key(_args(api_key_file=str(f)), generate_at=at)
    monkeypatch.setenv(ENV_VAR, "")
    with pytest.raises(InvalidRequestError, match="empty"):
        resolve_key(_args(), generate_at=at)
    with pytest.raises(InvalidRequestError, match="loopback"):
        resolve_key(_args(no_auth=True, host="0.0.0.0"), generate_at=at)
    with pytest.raises(InvalidRequestError, match="contradict"):
        resolve_key(_args(no_auth=True, api_key="k"), generate_at=at)
    assert resolve_key(_args(no_auth=True), generate_at=at).key is None


def test_key_lives_beside_a_sqlite_store(tmp_path):
    with Home.load(DEMO, store=f"sqlite:///{tmp_path / 'kitchen.db'}") as h:
        assert key_path_for(h.id, h.store) == tmp_path / "kitchen.api-key"


def test_ondol_home_serve_prints_its_key_file_and_a_one_time_link(tmp_path):
    """The command a person runs: a key is generated beside the store, the login link signs the
    browser in once, and without the key nothing opens."""
    port = free_port()
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path)}
    env.pop(ENV_VAR, None)
    p = subprocess.Popen([sys.executable, "-m", "ondol.cli", "home", "serve", "--store", f"sqlite:///{tmp_path}/d.db",
                          "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while not any("/login?once=" in line for line in lines):
            line = p.stdout.readline()
            assert line and time.monotonic() < deadline, "".join(lines)
            lines.append(line)
        text = "".join(lines)
        key_file = tmp_path / "d.api-key"
        assert str(key_file) in text and stat.S_IMODE(key_file.stat().st_mode) == 0o600, text
        link = re.search(r"(http://localhost:\d+/login\?once=\S+)", text).group(1)
        base = f"http://localhost:{port}"
        assert httpx.get(f"{base}/v1/homes/demo/devices").status_code == 401
        with httpx.Client(follow_redirects=True) as browser:
            assert browser.get(link).status_code == 200  # 303 to / and the page, signed in by the cookie
            assert browser.get(f"{base}/v1/homes/demo/devices").status_code == 200
        assert httpx.get(f"{base}/v1/homes/demo/devices", headers={
            "Authorization": f"Bearer {key_file.read_text().strip()}"}).status_code == 200
    finally:
        p.terminate()
        p.wait(30)


def test_no_auth_refuses_a_public_host(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ondol.cli", "home", "serve", "--no-auth", "--host", "0.0.0.0",
                        "--store", f"sqlite:///{tmp_path}/d.db"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "loopback" in r.stderr and "Traceback" not in r.stderr
