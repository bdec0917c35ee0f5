"""Tool calling over HTTP with the official ``openai`` client, for each tool-call format (Llama 3
JSON, Hermes/Qwen, Mistral), on tiny random-weight models with the families' real chat templates.

A random model calls tools only by chance. To see both outcomes under ``auto``, some requests
raise the call marker's logit with ``logit_bias`` — the model still decides, token by token, and
every call that begins is held to the declared schemas by the grammar from its marker on."""

from __future__ import annotations

import json
import re

import jsonschema
import openai
import pytest

from ondol.server import create_app
from tests.server_fixtures import TEST_KV_BYTES, ServerThread, wait_idle

MODEL = "tiny-tools"
SET_AC = {"type": "object", "properties": {
    "room": {"type": "string", "enum": ["거실", "안방", "주방"]},
    "celsius": {"type": "integer", "minimum": 16, "maximum": 30}}, "required": ["room", "celsius"]}
LIGHTS = {"type": "object", "properties": {
    "room": {"type": "string", "maxLength": 8}, "off": {"type": "boolean"}}, "required": ["room"]}
TOOLS = [
    {"type": "function", "function": {"name": "set_ac", "description": "에어컨 온도를 맞춘다", "parameters": SET_AC}},
    {"type": "function", "function": {"name": "lights", "description": "turn lights on or off", "parameters": LIGHTS}},
]
SCHEMAS = {"set_ac": SET_AC, "lights": LIGHTS}
MARKER = {"llama3.2": "<|python_tag|>", "qwen2.5": "<tool_call>", "mistral_v0.3": "[TOOL_CALLS]"}
FAMILIES = list(MARKER)
ID = {"mistral_v0.3": re.compile(r"^[A-Za-z0-9]{9}$")}
OPENAI_ID = re.compile(r"^call_[A-Za-z0-9]{24}$")


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param


@pytest.fixture(scope="module")
def server(tool_models, family):
    s = ServerThread(create_app(str(tool_models[family]), served_model_name=MODEL, kv_cache_bytes=TEST_KV_BYTES)).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def marker_bias(server, family):
    tok = server.state.llm.tokenizer
    ids = tok.encode(MARKER[family], add_special_tokens=False)
    assert len(ids) == 1, "the marker is one token in every family here"
    return ids[0]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def check_calls(calls, family, only: str | None = None) -> None:
    for c in calls:
        assert c.type == "function" and (ID.get(family, OPENAI_ID)).match(c.id), c.id
        assert c.function.name in SCHEMAS and (only is None or c.function.name == only)
        jsonschema.validate(json.loads(c.function.arguments), SCHEMAS[c.function.name])


def streamed(stream):
    """(content, {index: (id, name, arguments)}, finish_reason, chunks) from a chat stream."""
    content, calls, reason, chunks = "", {}, None, list(stream)
    for chunk in chunks:
        for ch in chunk.choices:
            content += ch.delta.content or ""
            for d in ch.delta.tool_calls or []:
                if d.index not in calls:  # OpenAI's first piece of a call carries id, type and name
                    assert d.id and d.type == "function" and d.function.name, d
                    calls[d.index] = [d.id, d.function.name, ""]
                else:
                    assert d.id is None and d.function.name is None
                calls[d.index][2] += d.function.arguments or ""
            reason = ch.finish_reason or reason
    return content, calls, reason, chunks


def test_required_calls_streamed_and_not(client, family):
    for seed in range(3):
        kw = dict(model=MODEL, messages=user("거실 에어컨 24도로 맞춰줘"), tools=TOOLS, tool_choice="required",
                  temperature=1.0, seed=seed, max_tokens=400)
        r = client.chat.completions.create(**kw)
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        assert choice.message.tool_calls
        check_calls(choice.message.tool_calls, family)
        content, calls, reason, chunks = streamed(client.chat.completions.create(**kw, stream=True))
        assert reason == "tool_calls" and content == ""
        assert [(n, a) for _, n, a in calls.values()] == \
            [(c.function.name, c.function.arguments) for c in choice.message.tool_calls]
        # Arguments arrive in pieces as they are generated, not in one chunk at the end.
        pieces = [d for ch in chunks for c in ch.choices for d in (c.delta.tool_calls or []) if d.function.arguments]
        assert len(pieces) > len(calls)


def test_named_function_and_parallel_off(client, family):
    choice = {"type": "function", "function": {"name": "lights"}}
    for seed in range(3):
        r = client.chat.completions.create(model=MODEL, messages=user("turn off the bedroom lights"), tools=TOOLS,
                                           tool_choice=choice, temperature=1.2, seed=seed, max_tokens=400)
        assert len(r.choices[0].message.tool_calls) == 1
        check_calls(r.choices[0].message.tool_calls, family, only="lights")
        r = client.chat.completions.create(model=MODEL, messages=user("불 다 꺼"), tools=TOOLS, tool_choice="required",
                                           parallel_tool_calls=False, temperature=1.2, seed=seed, max_tokens=400)
        assert len(r.choices[0].message.tool_calls) == 1


def test_auto_gives_text_or_valid_calls(client, family, marker_bias):
    outcomes = set()
    for seed in range(12):
        bias = {str(marker_bias): 6} if seed % 2 else {}
        kw = dict(model=MODEL, messages=user("침실 불 꺼줄래?"), tools=TOOLS, temperature=1.0, seed=seed,
                  max_tokens=100, logit_bias=bias)
        r = client.chat.completions.create(**kw)
        message, reason = r.choices[0].message, r.choices[0].finish_reason
        if message.tool_calls:
            outcomes.add("call")
            assert reason in ("tool_calls", "length")
            # A call cut off by max_tokens keeps what it got, as OpenAI's does; the others are whole.
            check_calls(message.tool_calls[:-1] if reason == "length" else message.tool_calls, family)
        else:  # a text turn stays text
            outcomes.add("text")
            assert reason in ("stop", "length") and message.content
            assert MARKER[family] not in message.content
        content, calls, s_reason, _ = streamed(client.chat.completions.create(**kw, stream=True))
        assert s_reason == reason and [(n, a) for _, n, a in calls.values()] == \
            [(c.function.name, c.function.arguments) for c in message.tool_calls or []]
        assert (content or None) == message.content
    assert outcomes == {"call", "text"}


def test_tool_choice_none_never_calls(client, family, marker_bias):
    for seed in range(4):
        r = client.chat.completions.create(model=MODEL, messages=user("에어컨 켜"), tools=TOOLS, tool_choice="none",
                                           temperature=1.0, seed=seed, max_tokens=40,
                                           logit_bias={str(marker_bias): 100})
        assert r.choices[0].message.tool_calls is None and r.choices[0].finish_reason in ("stop", "length")
        assert MARKER[family] not in (r.choices[0].message.content or "")


def test_results_go_back_in_the_next_turn(client, family):
    r = client.chat.completions.create(model=MODEL, messages=user("거실 25도"), tools=TOOLS, tool_choice="required",
                                       parallel_tool_calls=False, seed=1, temperature=0.8, max_tokens=400)
    call = r.choices[0].message.tool_calls[0]
    messages = user("거실 25도") + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"ok": True, "온도": 25}, ensure_ascii=False)},
    ]
    follow = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, tool_choice="none",
                                            max_tokens=10, seed=2)
    assert follow.choices[0].finish_reason in ("stop", "length")
    assert follow.usage.prompt_tokens > r.usage.prompt_tokens


@pytest.mark.parametrize("body, word", [
    ({"tool_choice": "required"}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "name"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "nope"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "x": {"type": "array", "uniqueItems": True}}}}}]}, "uniqueItems"),
    ({"tools": TOOLS, "response_format": {"type": "json_object"}}, "response_format"),
])
def test_bad_tool_requests_are_400(server, body, word):
    import httpx

    r = httpx.post(f"{server.url}/v1/chat/completions", timeout=60,
                   json={"model": MODEL, "messages": user("x"), "max_tokens": 4, **body})
    assert r.status_code == 400, r.text
    assert word in r.json()["error"]["message"]
    assert wait_idle(server.state.engine.engine).num_running == 0
