"""Structured output over HTTP with the official ``openai`` client: response_format json_schema and
json_object, streamed and not, mixed with free requests; unenforceable schemas are a 400 naming
the keyword. (Tool calls: test_server_tools.py.)"""

from __future__ import annotations

import asyncio
import json

import jsonschema
import openai
import pytest

from tests.server_fixtures import wait_idle

MODEL = "tiny"
SCHEMA = {
    "type": "object",
    "properties": {
        "room": {"enum": ["거실", "침실", "kitchen"]},
        "devices": {"type": "array", "minItems": 1, "maxItems": 3,
                    "items": {"type": "object", "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 10},
                        "on": {"type": "boolean"}}, "required": ["name", "on"], "additionalProperties": False}},
        "celsius": {"type": "integer", "minimum": 16, "maximum": 30},
    },
    "required": ["room", "devices"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "home", "schema": SCHEMA, "strict": True}}


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_json_schema_streamed_and_not(client):
    for seed in range(3):
        r = client.chat.completions.create(model=MODEL, messages=user("거실 불 켜줘"), response_format=FORMAT,
                                           temperature=1.2, seed=seed, max_tokens=200)
        assert r.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)
        stream = client.chat.completions.create(model=MODEL, messages=user("거실 불 켜줘"), response_format=FORMAT,
                                                temperature=1.2, seed=seed, max_tokens=200, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == r.choices[0].message.content


def test_json_object_and_n(client):
    r = client.chat.completions.create(model=MODEL, messages=user("JSON please"), n=3, seed=1, temperature=1.0,
                                       max_tokens=120, response_format={"type": "json_object"})
    finished = [c for c in r.choices if c.finish_reason == "stop"]
    assert finished
    for c in finished:
        assert isinstance(json.loads(c.message.content), dict)


def test_completions_endpoint_takes_response_format(client):
    r = client.completions.create(model=MODEL, prompt="거실", max_tokens=200, seed=3, temperature=1.0,
                                  extra_body={"response_format": FORMAT})
    jsonschema.validate(json.loads(r.choices[0].text), SCHEMA)


def test_constrained_and_free_streams_together(server):
    async def run():
        c = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)
        shaped = [c.chat.completions.create(model=MODEL, messages=user(f"방 {i}"), response_format=FORMAT,
                                            seed=i, temperature=1.0, max_tokens=200) for i in range(6)]
        free = [c.chat.completions.create(model=MODEL, messages=user(f"방 {i}"), seed=i, temperature=1.0,
                                          max_tokens=30) for i in range(6)]
        return await asyncio.gather(*shaped, *free)

    results = asyncio.run(run())
    for r in results[:6]:
        jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)
    assert any(not _is_json(r.choices[0].message.content) for r in results[6:])  # the free ones stay free
    assert wait_idle(server.state.engine.engine).num_kv_blocks_used == 0


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("schema, word", [
    ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "uniqueItems"),
    ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "not"),
    ({"type": "string", "format": "made-up"}, "made-up"),
])
def test_unenforceable_schema_is_400_naming_it(client, schema, word):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=user("x"), max_tokens=5, response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert word in e.value.body["message"]


@pytest.mark.parametrize("response_format, word", [
    ({"type": "yaml"}, "yaml"),
    ({"type": "json_schema"}, "json_schema"),
    ({"type": "json_schema", "json_schema": {"name": "bad name!", "schema": {}}}, "name"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": "not a schema"}}, "schema"),
])
def test_malformed_response_format_is_400(client, response_format, word):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=user("x"), max_tokens=5, response_format=response_format)
    assert word in e.value.body["message"]


def test_tools_on_a_template_without_tools_is_400(client):
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=user("x"), tools=[tool], max_tokens=5)
    assert "tool" in e.value.body["message"]
