"""The home's HTTP routes on a real server: devices, actions (applied and refused), events over
SSE, the API key, and serving the home while the model is still loading."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from ondol import LLM
from ondol.home.home import Home
from ondol.server import create_app
from tests.server_fixtures import TEST_KV_BYTES, ServerThread

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo-home.yaml"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with Home.load(DEMO, store=f"sqlite:///{tmp_path_factory.mktemp('home') / 'h.db'}") as h:
        yield h


@pytest.fixture(scope="module")
def server(tiny_model_dir, home):
    s = ServerThread(create_app(str(tiny_model_dir), home=home, kv_cache_bytes=TEST_KV_BYTES)).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=f"{server.url}/v1/homes", timeout=30) as c:
        yield c


def test_devices_and_tools(server, http):
    assert httpx.get(f"{server.url}/v1/homes").json()["data"][0]["id"] == "demo"
    devices = {d["id"]: d for d in http.get("/demo/devices").json()["data"]}
    assert len(devices) >= 25 and "거실 에어컨" in devices["ac.living"]["names"]
    assert "set_temperature" in devices["ac.living"]["actions"]
    tools = {t["function"]["name"] for t in http.get("/demo/tools").json()["data"]}
    assert {"turn_off", "set_temperature", "get_state"} <= tools


def test_actions_applied_and_refused(http, home):
    r = http.post("/demo/actions", json={"actions": [
        {"action": "turn_on", "target": {"device": "거실 에어컨"}},
        {"action": "set_temperature", "target": {"device": "거실 에어컨"}, "params": {"temperature": 23}}],
        "source": "test", "utterance": "거실 에어컨 23도로 켜줘"})
    assert r.status_code == 200 and r.json()["ok"]
    state = {d["id"]: d for d in http.get("/demo/devices").json()["data"]}["ac.living"]["state"]
    assert (state["power"], state["target_temperature"]) == ("on", 23)
    assert home.store.audit("demo", limit=1)[0].utterance == "거실 에어컨 23도로 켜줘"

    r = http.post("/demo/actions", json={"actions": [
        {"action": "set_temperature", "target": {"device": "거실 에어컨"}, "params": {"temperature": 99}}]})
    assert r.status_code == 400 and not r.json()["ok"] and "16 to 30" in r.json()["error"]
    assert home.state("ac.living")["target_temperature"] == 23


@pytest.mark.parametrize("body, status", [
    ({"actions": []}, 400), ({"actions": "turn on"}, 400), ({}, 400),
    ({"actions": [{"action": "turn_on", "target": {"device": "없는 기기"}}]}, 400),
])
def test_bad_bodies(http, body, status):
    r = http.post("/demo/actions", json=body)
    assert r.status_code == status and "error" in r.json()


def test_unknown_home_is_404(http):
    assert http.get("/elsewhere/devices").status_code == 404


def test_events_stream_state_changes(server, http):
    got: list[dict] = []
    ready = threading.Event()

    def listen():
        with httpx.stream("GET", f"{server.url}/v1/homes/demo/events", timeout=30) as r:
            for line in r.iter_lines():
                ready.set()
                if line.startswith("data: "):
                    got.append(json.loads(line[6:]))
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert ready.wait(10)
    assert http.post("/demo/actions", json={"actions": [
        {"action": "set_channel", "target": {"device": "거실 티비"}, "params": {"channel": 7}}]}).json()["ok"]
    t.join(10)
    assert got and got[0]["device"] == "tv.living" and got[0]["changed"]["channel"] == 7


def test_api_key_and_no_wait_for_the_model(tmp_path, tiny_model_dir):
    release = threading.Event()

    def slow_model() -> LLM:
        release.wait(30)
        return LLM(tiny_model_dir, kv_cache_bytes=TEST_KV_BYTES)

    with Home.load(DEMO, store=f"sqlite:///{tmp_path / 'h.db'}") as home:
        s = ServerThread(create_app(slow_model, home=home, api_key="열쇠-key".encode().hex())).start(wait_ready=False)
        try:
            key = {"Authorization": f"Bearer {'열쇠-key'.encode().hex()}"}
            assert httpx.get(f"{s.url}/v1/homes/demo/devices").status_code == 401
            assert httpx.get(f"{s.url}/v1/models", headers=key).status_code == 503  # the model is loading
            assert httpx.get(f"{s.url}/v1/homes/demo/devices", headers=key).status_code == 200  # the home is not
        finally:
            release.set()
            s.stop()
