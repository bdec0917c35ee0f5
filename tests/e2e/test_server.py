"""The OpenAI-compatible server, driven over real HTTP by the official ``openai`` client (sync and
async) and by httpx for what a client library would never send.

One server on the tiny model serves most tests (module-scoped); separate apps cover the API key,
loading (503) and overload (429); ``ondol serve`` runs as a subprocess for SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading

import httpx
import openai
import pytest

from ondol import LLM
from ondol.server import create_app
from tests.server_fixtures import TEST_KV_BYTES, ServerThread, free_port, wait_idle

MODEL = "tiny"
HANGUL = re.compile(r"[\uac00-\ud7a3]")


@pytest.fixture
def aclient(server):
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def collect_chat_stream(stream) -> tuple[dict[int, str], dict[int, str], list]:
    """(text per choice, finish_reason per choice, all chunks) of a sync chat stream."""
    texts: dict[int, str] = {}
    reasons: dict[int, str] = {}
    chunks = list(stream)
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] = texts.get(ch.index, "") + (ch.delta.content or "")
            if ch.finish_reason:
                reasons[ch.index] = ch.finish_reason
    return texts, reasons, chunks


# --- the happy paths ------------------------------------------------------------------------------

def test_health_and_models(server, client, http):
    assert http.get("/health").json() == {"status": "ok"}
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL


def test_chat_length_and_usage(client):
    r = client.chat.completions.create(model=MODEL, messages=user("turn off the lights"), max_tokens=12,
                                       temperature=0, extra_body={"ignore_eos": True})
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    (choice,) = r.choices
    assert choice.finish_reason == "length" and choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    u = r.usage
    assert u.completion_tokens == 12 and u.prompt_tokens > 5 and u.total_tokens == u.prompt_tokens + 12
    assert u.prompt_tokens_details.cached_tokens >= 0
    # The same prompt again: its full blocks come from the prefix cache.
    again = client.chat.completions.create(model=MODEL, messages=user("turn off the lights " * 8), max_tokens=2,
                                           temperature=0)
    cached = client.chat.completions.create(model=MODEL, messages=user("turn off the lights " * 8), max_tokens=2,
                                            temperature=0)
    assert cached.usage.prompt_tokens == again.usage.prompt_tokens
    assert cached.usage.prompt_tokens_details.cached_tokens >= 16


def test_streamed_chat_equals_non_streamed_and_korean_is_intact(client):
    """Sampled with the same seed, the joined deltas equal the non-streamed content, for a seed whose
    output holds Hangul (each syllable is several byte tokens, so a stream that split them would
    show U+FFFD where the full text has the syllable). The random model also emits invalid byte
    sequences, which decode to U+FFFD in both."""
    korean_seen = False
    for seed in range(16):
        kw = dict(model=MODEL, messages=user("거실 에어컨 24도로 맞춰줘"), max_tokens=24, temperature=1.0, seed=seed,
                  extra_body={"ignore_eos": True})
        full = client.chat.completions.create(**kw).choices[0].message.content
        if not HANGUL.search(full) and seed < 15:
            continue
        texts, reasons, chunks = collect_chat_stream(client.chat.completions.create(
            **kw, stream=True, stream_options={"include_usage": True}))
        assert texts == {0: full} and reasons == {0: "length"}
        assert chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 24
        assert all(c.usage is None for c in chunks[:-1])
        korean_seen = korean_seen or bool(HANGUL.search(full))
        if korean_seen:
            break
    assert korean_seen, "no seed produced Hangul: the test lost its point"


def test_completions_prompts_and_n(client):
    r = client.completions.create(model=MODEL, prompt="The capital of Korea is", max_tokens=8, temperature=0,
                                  extra_body={"ignore_eos": True})
    assert r.object == "text_completion" and r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 8
    ids = [420, 100, 101, 102, 103]
    many = client.completions.create(model=MODEL, prompt=["The capital of Korea is", "침실 불 다 꺼 줘"], max_tokens=5,
                                     n=2, seed=3, temperature=0.9, extra_body={"ignore_eos": True})
    assert [c.index for c in many.choices] == [0, 1, 2, 3]
    assert many.usage.completion_tokens == 20
    by_ids = client.completions.create(model=MODEL, prompt=ids, max_tokens=5, temperature=0)
    assert by_ids.usage.prompt_tokens == len(ids)
    batch = client.completions.create(model=MODEL, prompt=[ids, ids], max_tokens=5, temperature=0)
    assert [c.text for c in batch.choices] == [by_ids.choices[0].text] * 2


def test_n2_with_seed_streams_each_choice(client):
    kw = dict(model=MODEL, messages=user("hello"), max_tokens=10, n=2, seed=11, temperature=1.0,
              extra_body={"ignore_eos": True})
    r = client.chat.completions.create(**kw)
    assert [c.index for c in r.choices] == [0, 1] and r.usage.completion_tokens == 20
    texts, reasons, chunks = collect_chat_stream(client.chat.completions.create(**kw, stream=True))
    assert texts == {0: r.choices[0].message.content, 1: r.choices[1].message.content}
    assert reasons == {0: "length", 1: "length"}
    roles = [ch.index for c in chunks for ch in c.choices if ch.delta.role == "assistant"]
    assert sorted(roles) == [0, 1]
    # choice i uses seed + i: choice 1 of seed 11 is choice 0 of seed 12
    r12 = client.chat.completions.create(**{**kw, "n": 1, "seed": 12})
    assert r12.choices[0].message.content == r.choices[1].message.content


def test_seed_reproducible(client):
    kw = dict(model=MODEL, prompt="once upon a time", max_tokens=16, temperature=1.0, extra_body={"ignore_eos": True})
    a = client.completions.create(**kw, seed=7).choices[0].text
    b = client.completions.create(**kw, seed=7).choices[0].text
    c = client.completions.create(**kw, seed=8).choices[0].text
    assert a == b and a != c


def test_logit_bias_forces_and_bans(client, tiny_model_dir):
    from ondol import LLM, SamplingParams

    kw = dict(model=MODEL, prompt="set the living room", max_tokens=6, extra_body={"ignore_eos": True})
    forced = client.completions.create(**kw, temperature=1.0, seed=3, logit_bias={"42": 100}, logprobs=1).choices[0]
    assert len(set(forced.logprobs.tokens)) == 1
    # Ban every token greedy decoding picks: the served answer must avoid them all, and equal
    # what the Python API gives under the same bias.
    llm = LLM(tiny_model_dir)
    greedy_ids = llm.generate("set the living room", SamplingParams(max_tokens=6, temperature=0,
                                                                    ignore_eos=True)).token_ids
    bias = {t: -100 for t in greedy_ids}
    local = llm.generate("set the living room", SamplingParams(max_tokens=6, temperature=0, ignore_eos=True,
                                                               logit_bias=bias))
    assert not set(local.token_ids) & set(greedy_ids)
    served = client.completions.create(**kw, temperature=0, logit_bias={str(t): b for t, b in bias.items()})
    assert served.choices[0].text == local.text


def test_stop_strings(client):
    kw = dict(model=MODEL, prompt="set the living room", max_tokens=30, temperature=0, extra_body={"ignore_eos": True})
    text = client.completions.create(**kw).choices[0].text
    assert len(text) >= 6
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    cut = client.completions.create(**kw, stop=[stop, "\u2603never"])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == text[: text.index(stop)]
    streamed = "".join(c.choices[0].text for c in client.completions.create(**kw, stop=stop, stream=True)
                       if c.choices)
    assert streamed == cut.choices[0].text


def test_logprobs(client):
    r = client.chat.completions.create(model=MODEL, messages=user("hi"), max_tokens=6, temperature=0, logprobs=True,
                                       top_logprobs=3, extra_body={"ignore_eos": True})
    content = r.choices[0].logprobs.content
    assert len(content) == 6
    for t in content:
        assert len(t.top_logprobs) == 3 and isinstance(t.bytes, list) and t.logprob <= 0
        # greedy: the chosen token is the most likely one
        assert t.top_logprobs[0].logprob == pytest.approx(t.logprob)
        assert t.top_logprobs[0].token == t.token
    assert b"".join(bytes(t.bytes) for t in content).decode("utf-8", "replace") == r.choices[0].message.content

    c = client.completions.create(model=MODEL, prompt="hi", max_tokens=6, temperature=0, logprobs=2,
                                  extra_body={"ignore_eos": True})
    lp = c.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 6
    assert all(len(t) <= 2 for t in lp.top_logprobs) and lp.text_offset == sorted(lp.text_offset)
    streamed = [ch.choices[0].logprobs for ch in client.completions.create(
        model=MODEL, prompt="hi", max_tokens=6, temperature=0, logprobs=2, stream=True,
        extra_body={"ignore_eos": True}) if ch.choices and ch.choices[0].logprobs]
    assert [t for s in streamed for t in s.tokens] == lp.tokens
    assert [o for s in streamed for o in s.text_offset] == lp.text_offset


def test_async_client_stream_and_not(aclient):
    async def main():
        kw = dict(model=MODEL, messages=user("start the washer"), max_tokens=10, temperature=0,
                  extra_body={"ignore_eos": True})
        full = await aclient.chat.completions.create(**kw)
        pieces = []
        async for chunk in await aclient.chat.completions.create(**kw, stream=True):
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
        comp = await aclient.completions.create(model=MODEL, prompt="is the front door locked?", max_tokens=4)
        return full, "".join(pieces), comp

    full, streamed, comp = asyncio.run(main())
    assert streamed == full.choices[0].message.content
    assert comp.usage.completion_tokens <= 4


# --- errors ---------------------------------------------------------------------------------------

def assert_openai_error(r: httpx.Response, status: int, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param
    return err


CHAT = "/v1/chat/completions"


@pytest.mark.parametrize("body, param", [
    ({"model": MODEL, "messages": "x"}, "messages"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, "temperature"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}, "max_tokens"),
    ({"model": MODEL, "messages": []}, "messages"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "n": 17}, "n"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, None),
    ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "top_logprobs": 3}, None),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temperature": 2.5}, "temperature"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "logit_bias": {"x": 1}}, "logit_bias.x"),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "logit_bias": {"1": 500}}, None),
    ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "logit_bias": {"99999999": 1}}, None),
])
def test_bad_requests_are_400(http, body, param):
    assert_openai_error(http.post(CHAT, json=body), 400, param)


@pytest.mark.parametrize("content", [b'{"model": "tiny", "messages": [', b"", b"[]", b"null",
                                     b'{"model": "tiny", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
                                     b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], '
                                     b'"temperature": NaN}'])
def test_malformed_bodies_are_400(http, content):
    assert_openai_error(http.post(CHAT, content=content, headers={"content-type": "application/json"}), 400)


def test_unknown_model_and_route_are_404(http):
    err = assert_openai_error(http.post(CHAT, json={"model": "gpt-5", "messages": user("hi")}), 404, "model")
    assert err["code"] == "model_not_found"
    assert_openai_error(http.get("/v1/models/gpt-5"), 404)
    assert_openai_error(http.get("/v1/nothing"), 404)
    assert_openai_error(http.get(CHAT), 405)


def test_prompt_longer_than_context_is_400(http, server):
    ctx = server.state.max_model_len
    assert_openai_error(http.post("/v1/completions", json={"model": MODEL, "prompt": [5] * (ctx + 10)}), 400)
    assert_openai_error(http.post(CHAT, json={"model": MODEL, "messages": user("lights " * ctx)}), 400)
    assert_openai_error(http.post(CHAT, json={"model": MODEL, "messages": user("lights " * ctx), "stream": True}), 400)
    assert_openai_error(http.post("/v1/completions", json={"model": MODEL, "prompt": [10 ** 9]}), 400)


def test_enormous_max_tokens_ends_with_length(http, server):
    r = http.post("/v1/completions", json={"model": MODEL, "prompt": "hi", "max_tokens": 10 ** 12, "ignore_eos": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"] == server.state.max_model_len


@pytest.mark.parametrize("extra", [{"temperature": 1e-300, "seed": 1}, {"repetition_penalty": 0.01}, {"top_p": 0},
                                   {"top_k": 10 ** 20}, {"min_p": 1.0}, {"seed": -5}, {"stop": ""},
                                   {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}])
def test_edge_values_are_served(http, extra):
    r = http.post(CHAT, json={"model": MODEL, "messages": user("hi"), "max_tokens": 3, **extra})
    assert r.status_code == 200, r.text


def test_lone_surrogate_is_400(http):
    body = b'{"model": "tiny", "messages": [{"role": "user", "content": "\\ud800 x"}]}'
    assert_openai_error(http.post(CHAT, content=body, headers={"content-type": "application/json"}), 400)


def test_unknown_fields_are_ignored(http):
    r = http.post(CHAT, json={"model": MODEL, "messages": user("hi"), "max_tokens": 2, "frobnicate": {"x": 1},
                              "logit_bias": {}, "tools": [], "response_format": {"type": "text"}})
    assert r.status_code == 200, r.text


def test_metrics(http, client):
    client.chat.completions.create(model=MODEL, messages=user("metrics please"), max_tokens=3)
    text = http.get("/metrics").text
    for name in ["ondol_requests_total", "ondol_prompt_tokens_total", "ondol_generation_tokens_total",
                 "ondol_num_requests_waiting", "ondol_num_requests_running", "ondol_kv_cache_usage_perc",
                 "ondol_prefix_cache_hit_rate", "ondol_prefix_cache_queries_total", "ondol_prefix_cache_hits_total",
                 "ondol_time_to_first_token_seconds_bucket", "ondol_inter_token_latency_seconds_bucket",
                 "ondol_e2e_request_latency_seconds_bucket"]:
        assert name in text, name
    assert re.search(r'ondol_requests_total\{endpoint="/v1/chat/completions",status="200"\} [1-9]', text)
    assert re.search(r'ondol_generation_tokens_total [1-9]', text)


def test_api_key(tiny_model_dir):
    s = ServerThread(create_app(str(tiny_model_dir), served_model_name=MODEL, api_key="sekret",
                                kv_cache_bytes=TEST_KV_BYTES)).start()
    try:
        body = {"model": MODEL, "messages": user("hi"), "max_tokens": 2}
        with httpx.Client(base_url=s.url) as h:
            assert_openai_error(h.post(CHAT, json=body), 401)
            assert_openai_error(h.post(CHAT, json=body, headers={"Authorization": "Bearer nope"}), 401)
            assert_openai_error(h.get("/v1/models", headers={"Authorization": "Basic sekret"}), 401)
            assert h.get("/health").status_code == 200
            for path in ("/metrics", "/docs", "/openapi.json", "/redoc"):  # only /health is open
                assert_openai_error(h.get(path), 401)
                assert h.get(path, headers={"Authorization": "Bearer sekret"}).status_code == 200, path
        ok = openai.OpenAI(base_url=f"{s.url}/v1", api_key="sekret", max_retries=0)
        assert ok.chat.completions.create(**body).choices[0].finish_reason in ("stop", "length")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{s.url}/v1", api_key="wrong", max_retries=0).models.list()
    finally:
        s.stop()


def test_503_while_loading_then_429_when_overloaded(tiny_model_dir):
    """An app whose loader is held back answers 503 everywhere; once loaded with room for one
    running and one waiting request, a burst gets some 429s with Retry-After and no 500."""
    release = threading.Event()

    def loader():
        release.wait(30)
        return LLM(tiny_model_dir, kv_cache_bytes=TEST_KV_BYTES, max_num_seqs=1)

    s = ServerThread(create_app(loader, served_model_name=MODEL, max_waiting=1)).start(wait_ready=False)
    try:
        with httpx.Client(base_url=s.url, timeout=60) as h:
            assert h.get("/health").status_code == 503
            assert_openai_error(h.post(CHAT, json={"model": MODEL, "messages": user("hi")}), 503)
            assert_openai_error(h.post(CHAT, content=b"not json", headers={"content-type": "application/json"}), 503)
            assert_openai_error(h.get("/v1/models"), 503)
            assert h.get("/metrics").status_code == 200
        release.set()
        s.wait_ready(30)

        async def burst():
            async with httpx.AsyncClient(base_url=s.url, timeout=60) as h:
                body = {"model": MODEL, "messages": user("hi"), "max_tokens": 40, "ignore_eos": True}
                return await asyncio.gather(*(h.post(CHAT, json={**body, "stream": i % 2 == 0}) for i in range(8)))

        responses = asyncio.run(burst())
        codes = sorted(r.status_code for r in responses)
        assert set(codes) <= {200, 429} and 200 in codes and 429 in codes, codes
        for r in responses:
            if r.status_code == 429:
                assert_openai_error(r, 429)
                assert int(r.headers["retry-after"]) >= 1
        assert wait_idle(s.state.engine.engine).num_kv_blocks_used == 0
    finally:
        release.set()
        s.stop()


# --- load: concurrency and aborts ------------------------------------------------------------------

def test_32_concurrent_streams_and_greedy_equals_solo(server, client, aclient):
    prompts = [("lights " * (1 + 7 * i)).strip() + f" {i}" for i in range(32)]
    greedy = [i for i in range(32) if i % 3 == 0]
    solo = {i: client.chat.completions.create(model=MODEL, messages=user(prompts[i]), max_tokens=20, temperature=0,
                                              extra_body={"ignore_eos": True}).choices[0].message.content
            for i in greedy}

    async def one(i: int) -> str:
        kw = dict(temperature=0) if i in greedy else dict(temperature=0.5 + (i % 4) * 0.3, seed=i)
        stream = await aclient.chat.completions.create(model=MODEL, messages=user(prompts[i]), max_tokens=20,
                                                       stream=True, extra_body={"ignore_eos": True}, **kw)
        parts, reason = [], None
        async for chunk in stream:
            for ch in chunk.choices:
                parts.append(ch.delta.content or "")
                reason = ch.finish_reason or reason
        assert reason == "length"
        return "".join(parts)

    async def main():
        return await asyncio.gather(*(one(i) for i in range(32)))

    outputs = asyncio.run(main())
    for i in greedy:
        assert outputs[i] == solo[i], i
    stats = wait_idle(server.state.engine.engine)
    assert stats.num_running == 0 and stats.num_waiting == 0 and stats.num_kv_blocks_used == 0


def test_200_streams_aborted_mid_way_free_everything(server, aclient):
    engine = server.state.engine.engine
    before = engine.stats.num_generated_tokens

    async def one(i: int, gate: asyncio.Semaphore) -> int:
        async with gate:
            stream = await aclient.chat.completions.create(
                model=MODEL, messages=user(f"abort me {i} " * (1 + i % 5)), max_tokens=200, stream=True,
                temperature=0.8, seed=i, extra_body={"ignore_eos": True})
            chunks = stream.__aiter__()
            n = 0
            while n < 1 + i % 2:
                await chunks.__anext__()
                n += 1
            await chunks.aclose()
            await stream.close()
            return n

    async def main():
        gate = asyncio.Semaphore(25)
        return await asyncio.gather(*(one(i, gate) for i in range(200)))

    counts = asyncio.run(main())
    assert len(counts) == 200
    stats = wait_idle(engine)
    assert stats.num_running == 0 and stats.num_waiting == 0 and stats.num_kv_blocks_used == 0
    # Aborted at once: far fewer tokens than 200 full requests would have produced.
    print("tokens generated by 200 aborted streams:", stats.num_generated_tokens - before)
    assert stats.num_generated_tokens - before < 200 * 200 // 4


# --- SIGTERM ---------------------------------------------------------------------------------------

def test_sigterm_drains_and_exits_0(tiny_model_dir):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ondol.cli", "serve", str(tiny_model_dir), "--port", str(port),
         "--served-model-name", MODEL, "--kv-cache-memory", "16M", "--shutdown-grace", "5", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        assert "serving" in line and f":{port}" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = f"http://127.0.0.1:{port}"
        body = {"model": MODEL, "messages": user("a long story"), "max_tokens": 200, "ignore_eos": True,
                "stream": True}
        with httpx.Client(base_url=url, timeout=30) as h, h.stream("POST", CHAT, json=body) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert json.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"
            proc.send_signal(signal.SIGTERM)
            rest = [line for line in lines if line.startswith("data: ")]
        try:  # draining or gone: never served
            late = httpx.post(f"{url}{CHAT}", json={**body, "stream": False}, timeout=10)
            assert late.status_code == 503
        except httpx.TransportError:
            pass
        assert rest[-1] == "data: [DONE]"
        finals = [json.loads(x[6:])["choices"][0]["finish_reason"] for x in rest[:-1]]
        assert finals[-1] in ("length", "abort")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
