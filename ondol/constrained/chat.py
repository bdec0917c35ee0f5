"""A chat request's structure, shared by ``LLM.chat`` and the server: ``response_format``, ``tools``,
``tool_choice`` and ``parallel_tool_calls`` in OpenAI's form become one ``ChatConstraints`` (a
grammar and decoding flags for ``SamplingParams``, and the tool-call format to parse the output
with); messages in OpenAI's form become what chat templates expect.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ondol.constrained.grammar import Grammar
from ondol.constrained.tool_calls import Tool, ToolCall, ToolFormat, parse_tool_choice, parse_tools, plan_tools
from ondol.engine.output import Completion
from ondol.engine.sampler import SamplingParams
from ondol.errors import InvalidRequestError

if TYPE_CHECKING:
    from ondol.tokenizer import Tokenizer

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def response_format_grammar(response_format: Mapping[str, Any] | None) -> Grammar | None:
    """OpenAI's ``response_format`` as a Grammar: ``{"type": "text"}`` (or None) constrains
    nothing; ``{"type": "json_object"}`` is any JSON object; ``{"type": "json_schema",
    "json_schema": {"name", "schema", "strict"}}`` is a document valid under the schema. The schema
    is enforced whatever ``strict`` says: ondol can, so it does."""
    if response_format is None:
        return None
    if not isinstance(response_format, Mapping):
        raise InvalidRequestError("response_format must be an object such as {\"type\": \"json_object\"}.")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return Grammar.json_object()
    if kind != "json_schema":
        raise InvalidRequestError(
            f"response_format type {kind!r} is not supported; use \"text\", \"json_object\" or \"json_schema\".")
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping):
        raise InvalidRequestError("response_format json_schema needs a \"json_schema\" object with a \"schema\".")
    name = spec.get("name")
    if name is not None and (not isinstance(name, str) or not _NAME.match(name)):
        raise InvalidRequestError("response_format json_schema name must be 1-64 letters, digits, _ or -.")
    schema = spec.get("schema")
    if schema is None:
        return Grammar.json_object()
    return Grammar.json_schema(schema)


@dataclass(frozen=True)
class ChatConstraints:
    """What a chat request's structure asks of decoding, and how to read the output back."""

    grammar: Grammar | None = None
    skip_special_tokens: bool = True
    banned_token_ids: tuple[int, ...] = ()
    tool_format: ToolFormat | None = None  # parse the output into tool calls with it
    tools: tuple[Tool, ...] = ()

    def apply(self, params: SamplingParams) -> SamplingParams:
        if self.grammar is None and self.skip_special_tokens and not self.banned_token_ids:
            return params
        banned = tuple(set(params.banned_token_ids) | set(self.banned_token_ids))
        return dataclasses.replace(params, grammar=self.grammar or params.grammar, banned_token_ids=banned,
                                   skip_special_tokens=self.skip_special_tokens and params.skip_special_tokens)

    def parse(self, text: str) -> tuple[str | None, list[ToolCall]]:
        """An output as (content, tool calls): calls taken out when tools may be called."""
        return self.tool_format.parse(text) if self.tool_format is not None else (text, [])

    def template_tools(self) -> list[dict[str, Any]] | None:
        """The tools as chat templates take them (OpenAI's form)."""
        if not self.tools:
            return None
        # Templates read description unconditionally (Hermes'), so it is always there.
        return [{"type": "function", "function": {"name": t.name, "description": t.description or "",
                                                   "parameters": t.parameters}} for t in self.tools]


def chat_constraints(tokenizer: Tokenizer, *, tools: Sequence[Mapping[str, Any]] | None = None,
                     tool_choice: str | Mapping[str, Any] | None = None, parallel_tool_calls: bool = True,
                     response_format: Mapping[str, Any] | None = None) -> ChatConstraints:
    """Check a chat request's structure fields and turn them into ChatConstraints.

    A response format shapes the answer when it is text; a tool call has its own grammar, so the
    two cannot both constrain one output: with tools that may be called, ``response_format`` must
    be text (OpenAI applies it to the final answer of a later turn, after the tool results)."""
    fmt = response_format_grammar(response_format)
    parsed = parse_tools(list(tools)) if tools else []
    if tool_choice is not None and not parsed:
        raise InvalidRequestError("tool_choice needs tools: the request declares none.")
    if not parsed:
        return ChatConstraints(grammar=fmt)
    choice = parse_tool_choice(tool_choice, parsed)
    plan = plan_tools(tokenizer, parsed, choice, parallel_tool_calls)
    if fmt is not None and plan.format is not None:
        raise InvalidRequestError(
            "response_format cannot be combined with tools the model may call; send it with tool_choice "
            "\"none\", or in the turn after the tool results.")
    return ChatConstraints(grammar=plan.grammar or fmt, skip_special_tokens=plan.skip_special_tokens,
                           banned_token_ids=plan.banned_token_ids, tool_format=plan.format, tools=tuple(parsed))


@dataclass
class ChatCompletion(Completion):
    """A finished chat turn: ``text`` is the raw output; ``content`` is what is left of it once
    tool calls are taken out (None when nothing is); ``finish_reason`` is "tool_calls" when the
    model called tools."""

    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)


def chat_completion(completion: Completion, constraints: ChatConstraints) -> ChatCompletion:
    content, calls = constraints.parse(completion.text)
    return ChatCompletion(completion.text, completion.token_ids, finish_reason(completion.finish_reason, bool(calls)),
                          completion.prompt_token_ids, completion.logprobs, content=content, tool_calls=calls)


def finish_reason(reason: str | None, called: bool) -> str | None:
    """OpenAI's finish reason for a turn: "tool_calls" when it ended normally after calling tools."""
    return "tool_calls" if called and reason == "stop" else reason


def template_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-form messages as chat templates expect them: content parts joined into a string,
    "developer" as "system", and each assistant tool call's ``arguments`` as a dict (templates
    write it with ``tojson``; a JSON string would be quoted twice)."""
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise InvalidRequestError(f"messages[{i}] must be an object with a \"role\".")
        m = dict(message)
        content = m.get("content")
        if isinstance(content, list):
            m["content"] = "\n".join(p.get("text", "") for p in content if isinstance(p, Mapping))
        elif content is None:
            m["content"] = ""
        if m["role"] == "developer":
            m["role"] = "system"
        if m.get("tool_calls"):
            m["tool_calls"] = [_template_call(c, i) for c in m["tool_calls"]]
        else:
            m.pop("tool_calls", None)
        out.append(m)
    return out


def _template_call(call: Any, index: int) -> dict[str, Any]:
    fn = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
        raise InvalidRequestError(f"messages[{index}].tool_calls: each call needs a function with a name.")
    arguments = fn.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as e:
            raise InvalidRequestError(
                f"messages[{index}].tool_calls: arguments of {fn['name']!r} are not valid JSON: {e}.") from None
    return {"id": call.get("id"), "type": "function", "function": {"name": fn["name"], "arguments": arguments}}
