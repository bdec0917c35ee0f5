"""Hostile input against the real servers (tests/hostile.py): over a thousand seeded malformed and
hostile requests, no 5xx and no crash, an audit row for every command that reached the home; a
victim stream's tokens unchanged by 50 hostile requests beside it; a 30 MB prompt refused without
tokenizing; a looping or 100 MB template stopped within its budget while /health answers."""

# ruff: noqa: F811

from __future__ import annotations

import gc
import json
import re
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest

from ondol import LLM
from ondol.home.home import Home
from ondol.server import create_app
from ondol.server.dashboard import create_dashboard_app
from ondol.server.keys import HOME_MAX_BODY, SERVE_MAX_BODY
from ondol.server.shell import Access
from tests.e2e.home_fixtures import DEMO, assistant, home  # noqa: F401  (pytest fixtures)
from tests.hostile import Probe, Target, probes
from tests.server_fixtures import TEST_KV_BYTES, ServerThread, wait_idle

KEY = "hostile-열쇠".encode().hex()
AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
LOOP = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
HUGE = "{{ 'a' * 100000000 }}"


@pytest.fixture(scope="module")
def api(tiny_model_dir, tmp_path_factory):
    """``ondol serve MODEL --home`` with a key: the model's routes and the home's."""
    home = Home.load(DEMO, store=f"sqlite:///{tmp_path_factory.mktemp('api-home') / 'h.db'}")
    app = create_app(str(tiny_model_dir), served_model_name="tiny", kv_cache_bytes=TEST_KV_BYTES, home=home,
                     access=Access(api_key=KEY, host="127.0.0.1", max_body_bytes=SERVE_MAX_BODY))
    s = ServerThread(app).start()
    yield s, home
    s.stop()
    home.close()


@pytest.fixture(scope="module")
def dash(home, assistant):
    """``ondol home serve`` with a key: the dashboard, the home's routes and its assistant."""
    s = ServerThread(create_dashboard_app(home, assistant, access=Access(
        api_key=KEY, host="127.0.0.1", max_body_bytes=HOME_MAX_BODY))).start()
    yield s
    s.stop()


def _send(client: httpx.Client, p: Probe) -> tuple[Probe, int, dict | None]:
    r = client.request(p.method, p.path, content=p.body, headers=p.headers)
    try:
        payload = r.json()
    except ValueError:
        payload = None
    return p, r.status_code, payload


def _fire(url: str, batch: list[Probe], workers: int = 4) -> list[tuple[Probe, int, dict | None]]:
    local = threading.local()

    def send(p: Probe):
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=60)
        return _send(local.client, p)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(send, batch))


def _check(outcomes, home: Home, seq_before: int, only_writer: bool) -> None:
    """No 5xx, the statuses each probe expects, and an audit row for every command that reached
    the home; with ``only_writer`` (nothing but these probes writes this home) exactly those rows."""
    fives = [(p.kind, p.path, (p.body or b"")[:200], status, payload) for p, status, payload in outcomes
             if status >= 500]
    assert fives == []
    wrong = [(p.kind, p.path, sorted(p.expect), status, payload) for p, status, payload in outcomes
             if p.expect is not None and status not in p.expect]
    assert wrong == []
    # Every command that reached the home has its audit row, refused ones included, and nothing
    # else wrote one (a request the gate or the parser refused changed nothing).
    reached = []
    for p, status, payload in outcomes:
        if not p.reaches_home:
            continue
        # Either the home answered (it audits every command it sees) or the body parser refused the
        # request before it reached the home; nothing in between, such as a refusal with no row.
        if payload is not None and "seq" in payload and "results" in payload:
            reached.append((status, payload))
        else:
            error = (payload or {}).get("error")
            assert status == 400 and isinstance(error, dict), (p.body[:200], status, payload)
            assert error["message"].startswith(("Invalid request", "The request body")), error
    seqs = sorted(payload["seq"] for _, payload in reached)
    assert len(reached) >= 100 and len(set(seqs)) == len(seqs) and seqs[0] > seq_before
    if only_writer:
        assert seqs == list(range(seq_before + 1, seq_before + 1 + len(reached)))
    rows = {r.seq: r for r in home.store.audit(home.id, limit=500)}
    for status, payload in reached:
        row = rows[payload["seq"]]
        assert all(x["ok"] for x in row.results) == payload["ok"] == (status == 200)


def test_a_thousand_hostile_requests_against_ondol_serve(api):
    server, home = api
    target = Target(KEY, home.id, tuple(d["id"] for d in home.devices()), model="tiny", body_limit=SERVE_MAX_BODY)
    batch = probes(16, 1000, target)
    seq_before = home.store.last_seq(home.id)
    start = time.monotonic()
    outcomes = _fire(server.url, batch)
    elapsed = time.monotonic() - start
    print(f"\n{len(batch)} hostile requests against ondol serve --home in {elapsed:.1f} s")
    _check(outcomes, home, seq_before, only_writer=True)
    assert {p.kind for p in batch} >= {"no_key", "cross_site", "bad_host", "media_type", "too_big", "broken_json",
                                       "actions", "too_many_actions", "paths", "login", "chat", "completion"}
    # A schema no finite output satisfies never generates (before, it aborted every stream).
    recursive = [status for p, status, _ in outcomes if p.kind == "chat" and b'"$ref": "#"}' in p.body
                 and b'"response_format": {"type": "json_schema"' in p.body]
    assert 400 in recursive and 200 not in recursive
    assert httpx.get(f"{server.url}/health").status_code == 200
    s = wait_idle(server.state.engine.engine)
    assert s.num_running == s.num_waiting == s.num_kv_blocks_used == 0


def test_six_hundred_hostile_requests_against_ondol_home_serve(dash, home):
    target = Target(KEY, home.id, tuple(d["id"] for d in home.devices()), body_limit=HOME_MAX_BODY)
    batch = probes(17, 600, target)
    seq_before = home.store.last_seq(home.id)
    start = time.monotonic()
    outcomes = _fire(dash.url, batch)
    print(f"\n{len(batch)} hostile requests against ondol home serve in {time.monotonic() - start:.1f} s")
    # /commands that are not dry runs write audit rows of their own
    _check(outcomes, home, seq_before, only_writer=False)
    assert {p.kind for p in batch} >= {"no_key", "cross_site", "media_type", "actions", "commands", "login"}
    assert httpx.get(f"{dash.url}/health").json()["status"] == "ok"


def _stream_tokens(url: str, body: dict) -> tuple[list[str], str]:
    tokens, finish = [], None
    with httpx.stream("POST", f"{url}/v1/completions", json=body, headers=AUTH, timeout=60) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choice = json.loads(line[6:])["choices"][0]
            tokens += choice["logprobs"]["tokens"] if choice.get("logprobs") else []
            finish = choice.get("finish_reason") or finish
    return tokens, finish


def test_a_victim_stream_is_unchanged_by_50_hostile_requests(api):
    server, home = api
    victim = {"model": "tiny", "prompt": "거실 에어컨 24도로 맞춰줘", "max_tokens": 64, "temperature": 0.8, "seed": 3,
              "ignore_eos": True, "stream": True, "logprobs": 0}
    solo, finish = _stream_tokens(server.url, victim)
    assert len(solo) == 64 and finish == "length"
    target = Target(KEY, home.id, tuple(d["id"] for d in home.devices()), model="tiny", body_limit=SERVE_MAX_BODY)
    pool = [p for p in probes(50, 2000, target) if p.kind in ("chat", "completion", "broken_json")]
    recursive = {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 8,
                 "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"$ref": "#"}}}}
    hostile = [Probe("chat", "POST", "/v1/chat/completions", json.dumps(recursive).encode(), AUTH)] * 10 + pool[:40]
    with ThreadPoolExecutor(1) as one:
        hostile_done = one.submit(_fire, server.url, hostile, 8)
        time.sleep(0.05)  # the hostile requests are arriving when the victim starts
        beside, finish = _stream_tokens(server.url, victim)
        outcomes = hostile_done.result()
    assert [s for _, s, _ in outcomes[:10]] == [400] * 10
    assert all(s < 500 for _, s, _ in outcomes)
    assert beside == solo and finish == "length"


# --- large prompts and templates ---------------------------------------------------------------

def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def test_a_30_mb_prompt_is_refused_without_being_tokenized(tiny_model_dir):
    llm = LLM(tiny_model_dir, kv_cache_bytes=TEST_KV_BYTES)
    encoded: list[int] = []
    real_encode = llm.tokenizer.encode
    llm.tokenizer.encode = lambda text, **kw: encoded.append(len(text)) or real_encode(text, **kw)
    s = ServerThread(create_app(llm, served_model_name="tiny",
                                access=Access(api_key=KEY, host="127.0.0.1", max_body_bytes=SERVE_MAX_BODY))).start()
    try:
        prompt = "거실 에어컨 " * ((30 << 20) // 17)  # 17 bytes of UTF-8 each
        body = json.dumps({"model": "tiny", "prompt": prompt, "max_tokens": 4}, ensure_ascii=False).encode()
        assert len(body) > 30 << 20

        def chunked():
            for i in range(0, len(body), 1 << 16):
                yield body[i:i + (1 << 16)]

        before = _rss()
        for content in (body, chunked()):  # with a Content-Length, and streamed in without one
            start = time.monotonic()
            r = httpx.post(f"{s.url}/v1/completions", content=content, headers=AUTH, timeout=60)
            print(f"\n30 MB prompt refused ({r.status_code}) in {time.monotonic() - start:.2f} s")
            assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        # Under the body limit but over what the context can hold in characters: a 400 that names
        # the numbers, before any tokenizing.
        text = prompt[:1 << 20]  # 2.4 MB
        for path, request in (("/v1/chat/completions", {"messages": [{"role": "user", "content": text}]}),
                              ("/v1/completions", {"prompt": text})):
            content = json.dumps({"model": "tiny", **request}, ensure_ascii=False).encode()
            r = httpx.post(f"{s.url}{path}", content=content, headers=AUTH, timeout=60)
            assert r.status_code == 400 and "more than the 4864 that can fit the context" in r.json()["error"]["message"]
        growth = _rss() - before
        print(f"RSS growth over the large prompts: {growth / 2**20:.1f} MiB")
        assert growth <= 100 << 20
        assert all(n < 10_000 for n in encoded)  # nothing large was ever tokenized
        ok = httpx.post(f"{s.url}/v1/completions", json={"model": "tiny", "prompt": "거실", "max_tokens": 2},
                        headers=AUTH, timeout=60)
        assert ok.status_code == 200
    finally:
        s.stop()


@pytest.fixture(scope="module")
def template_model(tiny_model_dir, tmp_path_factory):
    """The tiny model with a chat template chosen per test (chat_template.jinja wins over the config's)."""
    folder = tmp_path_factory.mktemp("template-model") / "m"
    shutil.copytree(tiny_model_dir, folder)
    return folder


@pytest.mark.parametrize("template, problem", [(LOOP, "did not finish within 2 s"),
                                               (HUGE, "(wrote more than 4864 characters|did not finish within 2 s)")])
def test_a_hostile_template_is_stopped_while_health_answers(template_model, template, problem):
    (template_model / "chat_template.jinja").write_text(template, encoding="utf-8")
    s = ServerThread(create_app(str(template_model), served_model_name="t", kv_cache_bytes=TEST_KV_BYTES,
                                template_timeout=2.0, access=Access(api_key=KEY, host="127.0.0.1"))).start()
    try:
        result: dict = {}

        def chat() -> None:
            start = time.monotonic()
            r = httpx.post(f"{s.url}/v1/chat/completions", headers=AUTH, timeout=60,
                           json={"model": "t", "messages": [{"role": "user", "content": "안녕"}], "max_tokens": 2})
            result.update(status=r.status_code, message=r.json()["error"]["message"], seconds=time.monotonic() - start)

        thread = threading.Thread(target=chat)
        thread.start()
        health = []
        while thread.is_alive():
            start = time.monotonic()
            health.append((httpx.get(f"{s.url}/health", timeout=10).status_code, time.monotonic() - start))
            time.sleep(0.05)
        thread.join()
        print(f"\n{template[:30]!r}: refused in {result['seconds']:.2f} s; /health answered {len(health)} times, "
              f"the slowest in {max(t for _, t in health) * 1000:.0f} ms")
        assert result["status"] == 400, result
        assert str(template_model) in result["message"]
        assert re.search(problem, result["message"]), result["message"]
        assert result["seconds"] < 2.0 + 2.0  # its budget, plus the worker's start and the hop
        # /health answered all along, each time at once rather than after the template.
        assert len(health) >= 5 and all(code == 200 for code, _ in health)
        assert max(seconds for _, seconds in health) < 1.0
    finally:
        s.stop()
