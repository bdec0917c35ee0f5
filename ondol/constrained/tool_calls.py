"""Tool calling that is valid by construction: OpenAI's ``tools`` and ``tool_choice`` become a
grammar in the model's own tool-call format, and the output is read back into ``tool_calls``.

The format is the one the model was trained on, read off its chat template (a model asked for a
format it never saw answers out of distribution, grammar or not):

=============  ============================================================================
llama3_json    Llama 3.1/3.2: ``{"name": "f", "parameters": {...}}`` as the whole answer,
               optionally after ``<|python_tag|>``; parallel calls joined by ``"; "`` (what
               vLLM's llama3_json parser splits on).
hermes         Hermes 2 Pro, Qwen2.5: ``<tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>``,
               calls joined by ``"\\n"``, text before the first call allowed (Qwen does it).
mistral        Mistral 7B Instruct v0.3: ``[TOOL_CALLS] [{"name": "f", "arguments": {...}}, ...]``
               (the space is the template's, and SentencePiece's "▁[" token).
=============  ============================================================================

Grammars, per ``tool_choice``:

* ``required``: one call of any declared tool (one or more when ``parallel_tool_calls``);
  ``function``: exactly one call of that tool. Each call is ``{"name": <const>, <args key>:
  <that tool's parameters schema>}``, an anyOf over the tools, written as ``json.dumps`` writes it.
  Arguments a schema does not declare are not generated unless it sets ``additionalProperties``
  (OpenAI's strict mode, which ondol always applies).
* ``auto``: free text, or calls. Hermes and Mistral: a call may begin anywhere after text, and is
  constrained from its marker on (a lazily triggered grammar; the marker's single token and its
  spelling in text both trigger it). Llama: the answer is either text whose first non-blank
  character is not ``{`` (nor the spelled-out ``<|python_tag|>``) or calls from the first
  character, as Meta's format has it. After the calls only an end token may follow (after
  parallel Hermes calls, one newline first, so that writing it cannot force another call): text
  after a call has no place in an OpenAI message (content comes before tool_calls) and would be
  lost when the template renders the turn again. A single call, or Mistral's closed list, ends
  the grammar outright.
* ``none``: no grammar; the format's single-token call marker is banned instead.

Mistral's template writes each call back with an ``"id"`` key; the grammar leaves it out (the
model generates calls without one; the server makes the ids), and the parser skips keys it does
not know. The parser takes ``"arguments"`` or ``"parameters"`` in any format, as vLLM's do.
Markers that are single tokens are matched as those tokens (llguidance treats every added token,
special or not, as a token and never as text), so the output must be decoded with special tokens
kept when a marker is a special token (``<|python_tag|>``, ``[TOOL_CALLS]``); Qwen's and Hermes'
``<tool_call>`` are added but not special, so they survive ordinary decoding.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ondol.constrained.grammar import JSON_OPTIONS, Grammar
from ondol.constrained.schema import check_schema
from ondol.constrained.tool_stream import BLANK, ToolCall, ToolCallDelta, ToolStreamParser
from ondol.errors import InvalidRequestError

if TYPE_CHECKING:
    from ondol.tokenizer import Tokenizer

__all__ = ["Tool", "ToolCall", "ToolCallDelta", "ToolChoice", "ToolFormat", "ToolPlan", "ToolStreamParser",
           "detect_tool_format", "parse_tool_choice", "parse_tools", "plan_tools"]

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _empty_parameters() -> dict:
    return {"type": "object", "properties": {}}


@dataclass(frozen=True)
class Tool:
    """One declared function."""

    name: str  # OpenAI's rule: 1-64 of a-z, A-Z, 0-9, _ and -
    description: str | None = None
    parameters: dict = field(default_factory=_empty_parameters)  # a JSON schema for the arguments object


def parse_tools(tools: list[dict]) -> list[Tool]:
    """OpenAI's ``tools`` (``[{"type": "function", "function": {"name", "description",
    "parameters", "strict"}}]``) checked and turned into Tools. Every schema is enforced, whatever
    ``strict`` says, and refused up front if ondol could not enforce it."""
    if not isinstance(tools, list):
        raise InvalidRequestError("tools must be a list of {\"type\": \"function\", \"function\": {...}} objects.")
    parsed: list[Tool] = []
    for i, item in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(item, Mapping):
            raise InvalidRequestError(f"{where} must be an object, not {type(item).__name__}.")
        if item.get("type") != "function":
            raise InvalidRequestError(f"{where}.type must be \"function\" (the only kind of tool), "
                                      f"not {item.get('type')!r}.")
        fn = item.get("function")
        if not isinstance(fn, Mapping):
            raise InvalidRequestError(f"{where}.function must be an object with a name.")
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidRequestError(f"{where}.function.name must be 1-64 letters, digits, underscores or "
                                      f"dashes, not {name!r}.")
        if any(t.name == name for t in parsed):
            raise InvalidRequestError(f"{where}: the tool name {name!r} is declared twice; names must be unique.")
        description = fn.get("description")
        if description is not None and not isinstance(description, str):
            raise InvalidRequestError(f"{where}.function.description must be a string.")
        parsed.append(Tool(name, description, _check_parameters(fn.get("parameters"), f"{where}.function")))
    return parsed


def _check_parameters(parameters: Any, where: str) -> dict:
    if parameters is None:
        return _empty_parameters()
    if not isinstance(parameters, Mapping):
        raise InvalidRequestError(f"{where}.parameters must be a JSON schema object.")
    if parameters.get("type", "object") != "object":
        raise InvalidRequestError(f"{where}.parameters must describe an object (\"type\": \"object\"): "
                                  "arguments are passed by name.")
    if "x-guidance" in parameters:
        # The call's JSON layout is the model's format's, not the request's to choose.
        raise InvalidRequestError(f"{where}.parameters cannot set \"x-guidance\".")
    parameters = copy.deepcopy(dict(parameters))
    try:
        check_schema(parameters)
    except InvalidRequestError as e:
        raise InvalidRequestError(f"{where}.parameters: {e}") from None
    return parameters


@dataclass(frozen=True)
class ToolChoice:
    mode: Literal["auto", "none", "required", "function"]
    name: str | None = None  # the function, for mode "function"


def parse_tool_choice(value: str | dict | None, tools: list[Tool]) -> ToolChoice:
    """OpenAI's ``tool_choice``: "auto", "none", "required" or ``{"type": "function", "function":
    {"name": ...}}``; absent, "auto" when there are tools and "none" when there are none."""
    if value is None:
        return ToolChoice("auto" if tools else "none")
    if isinstance(value, str):
        if value not in ("auto", "none", "required"):
            raise InvalidRequestError(f"tool_choice must be \"auto\", \"none\", \"required\" or a named function, "
                                      f"not {value!r}.")
        if value == "required" and not tools:
            raise InvalidRequestError("tool_choice \"required\" needs at least one tool in tools.")
        return ToolChoice("none" if not tools else value)
    if not isinstance(value, Mapping) or value.get("type") != "function" or not isinstance(value.get("function"),
                                                                                          Mapping):
        raise InvalidRequestError("tool_choice must be a string or {\"type\": \"function\", \"function\": "
                                  "{\"name\": ...}}.")
    name = value["function"].get("name")
    if not any(t.name == name for t in tools):
        known = ", ".join(repr(t.name) for t in tools) or "none"
        raise InvalidRequestError(f"tool_choice names the function {name!r}, which is not in tools "
                                  f"(declared: {known}).")
    return ToolChoice("function", name)


@dataclass(frozen=True)
class ToolFormat:
    """How one family of models writes tool calls: its markers and punctuation (which the output
    parser follows) and the grammar that makes the model follow them."""

    name: str
    open: str  # the marker that opens calls
    args_key: str  # what the grammar names the arguments ("arguments" or "parameters")
    close: str = ""  # the marker that closes a call (Hermes)
    list_open: bool = False  # the calls are a JSON list after the marker (Mistral)
    separator: str = ""  # between calls of one list or run (";" for Llama, "," for Mistral)
    grammar_separator: str = ""  # the separator as the grammar writes it
    opens_at_start_only: bool = False  # calls only as the whole answer (Llama)
    bare_json: bool = False  # a "{" at the start opens calls too (Llama)
    id_style: str = "openai"
    # Llama 3.1/3.2 templates refuse an assistant turn with more than one call, so a parallel
    # answer could not be sent back next turn: one call per turn.
    parallel: bool = True

    def parse(self, text: str) -> tuple[str | None, list[ToolCall]]:
        """A whole output as (content, calls); content is None when nothing but calls is left."""
        parser = self.stream_parser()
        content = parser.feed(text)[0] + parser.finish()[0]
        # The stream parser's notion of blank (not str.strip's, which also drops \x1c-\x1f): a whole
        # output and the same output streamed must agree on content.
        return (content if content.strip(BLANK) else None), parser.calls

    def stream_parser(self) -> ToolStreamParser:
        return ToolStreamParser(self)

    def markers(self) -> tuple[str, ...]:
        return (self.open, self.close) if self.close else (self.open,)


LLAMA3_JSON = ToolFormat("llama3_json", open="<|python_tag|>", args_key="parameters", separator=";",
                         grammar_separator="; ", opens_at_start_only=True, bare_json=True, parallel=False)
HERMES = ToolFormat("hermes", open="<tool_call>", close="</tool_call>", args_key="arguments")
MISTRAL = ToolFormat("mistral", open="[TOOL_CALLS]", args_key="arguments", list_open=True, separator=",",
                     grammar_separator=", ", id_style="mistral")


def detect_tool_format(tokenizer: Tokenizer) -> ToolFormat | None:
    """The tool-call format a model's chat template teaches, or None if it does not render tools."""
    template = tokenizer.template_for(tools=True) or ""
    if "[TOOL_CALLS]" in template:
        return MISTRAL
    if "<tool_call>" in template:
        return HERMES
    if re.search(r"\btools\b", template) and "<|start_header_id|>" in template and "parameters" in template:
        return LLAMA3_JSON
    return None


@dataclass(frozen=True)
class ToolPlan:
    """What a request's tools ask of decoding, and how to read its output."""

    grammar: Grammar | None  # None for tool_choice "none"
    skip_special_tokens: bool  # False when a call marker is a special token the parser must see
    banned_token_ids: tuple[int, ...]  # for "none": single-token call markers the model may not emit
    format: ToolFormat | None  # parse the output with it (None for "none")


def plan_tools(tokenizer: Tokenizer, tools: list[Tool], choice: ToolChoice,
               parallel_tool_calls: bool = True) -> ToolPlan:
    fmt = detect_tool_format(tokenizer)
    if choice.mode == "none" or not tools:
        marker = _marker_token(tokenizer, fmt.open) if fmt is not None else None
        return ToolPlan(None, True, (marker,) if marker is not None else (), None)
    if fmt is None:
        raise InvalidRequestError("This model's chat template does not support tools (it never renders them), "
                                  "so ondol cannot tell how the model calls them; send tool_choice \"none\" "
                                  "or use a model whose template has tool calling.")
    if choice.mode == "function":
        tools = [t for t in tools if t.name == choice.name]
        if not tools:
            raise InvalidRequestError(f"tool_choice names the function {choice.name!r}, which is not in tools.")
    many = parallel_tool_calls and choice.mode != "function" and fmt.parallel
    source = _GRAMMARS[fmt.name](fmt, _Markers.of(tokenizer, fmt), _call_rule(tools, fmt.args_key),
                                 choice.mode == "auto", many)
    special = tokenizer.special_token_ids
    keep_special = any(_marker_token(tokenizer, m) in special for m in fmt.markers())
    return ToolPlan(Grammar.lark(source, lazy=choice.mode == "auto"), not keep_special, (), fmt)


# -- grammars --------------------------------------------------------------------------------------


def _marker_token(tokenizer: Tokenizer, marker: str) -> int | None:
    """The id of the single token spelling ``marker``, if the vocabulary has one."""
    token_id = tokenizer.token_to_id(marker)
    if token_id is None:
        ids = tokenizer.encode(marker, add_special_tokens=False)
        token_id = ids[0] if len(ids) == 1 else None
    return token_id


@dataclass(frozen=True)
class _Markers:
    open: str  # Lark for "the opening marker, as its token or spelled out in text"
    open_token: int | None
    close: str

    @classmethod
    def of(cls, tokenizer: Tokenizer, fmt: ToolFormat) -> _Markers:
        def either(marker: str) -> tuple[str, int | None]:
            token = _marker_token(tokenizer, marker)
            spelled = json.dumps(marker)
            return (f"(<[{token}]> | {spelled})" if token is not None else spelled), token

        open_rule, open_token = either(fmt.open)
        return cls(open_rule, open_token, either(fmt.close)[0] if fmt.close else "")


def _call_rule(tools: list[Tool], args_key: str) -> str:
    """``call``: one call object of any of ``tools``, as a Lark rule with the schema inlined."""
    options = []
    for i, tool in enumerate(tools):
        base = f"#/properties/{args_key}" if len(tools) == 1 else f"#/anyOf/{i}/properties/{args_key}"
        arguments = _rebase_refs(_closed(tool.parameters), base)
        options.append({"type": "object", "properties": {"name": {"const": tool.name}, args_key: arguments},
                        "required": ["name", args_key], "additionalProperties": False})
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    # Inlined schemas take llguidance's default JSON layout unless told: make it json.dumps'.
    return f"call: %json {json.dumps({**schema, 'x-guidance': JSON_OPTIONS}, ensure_ascii=False)}"


def _closed(parameters: dict) -> dict:
    """The parameters with no arguments beyond those declared, unless the schema says otherwise
    (as OpenAI's strict mode demands of every tool schema): a function takes the arguments it
    names, and a small model left free invents others. Composed schemas are left as they are,
    since a sibling "additionalProperties" would not see the properties their parts declare."""
    if "additionalProperties" in parameters or "properties" not in parameters \
            or any(k in parameters for k in ("allOf", "anyOf", "oneOf", "$ref")):
        return parameters
    return {**parameters, "additionalProperties": False}


_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_DATA = ("enum", "const", "default", "examples")


def _rebase_refs(schema: Any, base: str) -> Any:
    """``schema`` with its local ``$ref`` pointers moved under ``base``: nested in the call
    schema, its root is no longer the document's root. (``#name`` anchors are found anywhere.)"""
    if isinstance(schema, list):
        return [_rebase_refs(s, base) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$ref" and isinstance(value, str) and (value == "#" or value.startswith("#/")):
            out[key] = base + value[1:]
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _rebase_refs(sub, base) for name, sub in value.items()}
        elif key in _DATA:
            out[key] = value
        else:
            out[key] = _rebase_refs(value, base)
    return out


# Free text; "." never matches a special token, so text cannot smuggle in a marker token.
_TEXT = "TEXT: /(.|\\n)*/"


def _trigger(marker: str) -> str:
    # A lazy lexeme ends at the first match, so the marker spelled in text starts the call.
    return f"trigger[lazy]: TEXT {json.dumps(marker)}"


def _hermes(fmt: ToolFormat, m: _Markers, call: str, auto: bool, many: bool) -> str:
    # Between calls a newline; one may end the calls too, or a model that writes it before its
    # end token would be forced into another call. (A single call ends the grammar at once.)
    more = ' ("\\n" open body)* "\\n"?' if many else ""
    rules = [f"open: {m.open}", f"close: {m.close}", 'body: "\\n" call "\\n" close', call]
    if not auto:
        return "\n".join([f"start: open body{more}", *rules])
    starts = ["TEXT", *([f"TEXT <[{m.open_token}]> body{more}"] if m.open_token is not None else []),
              f"trigger body{more}"]
    return "\n".join(["start: " + " | ".join(starts), *rules, _TEXT, _trigger(fmt.open)])


def _mistral(fmt: ToolFormat, m: _Markers, call: str, auto: bool, many: bool) -> str:
    more = f' ({json.dumps(fmt.grammar_separator)} call)*' if many else ""
    rules = [f'calls: " [" call{more} "]"', call]
    if not auto:
        return "\n".join(["start: open calls", f"open: {m.open}", *rules])
    starts = ["TEXT", *([f"TEXT <[{m.open_token}]> calls"] if m.open_token is not None else []), "trigger calls"]
    return "\n".join(["start: " + " | ".join(starts), *rules, _TEXT, _trigger(fmt.open)])


def _llama3_json(fmt: ToolFormat, m: _Markers, call: str, auto: bool, many: bool) -> str:
    more = f' ({json.dumps(fmt.grammar_separator)} call)*' if many else ""
    tagged = [f"<[{m.open_token}]> calls"] if m.open_token is not None else []
    rules = [f"calls: call{more}", call]
    if not auto:
        return "\n".join(["start: " + " | ".join(["calls", *tagged]), *rules])
    # Text may not begin (after blanks) with "{", which is a call, nor with the tag spelled out,
    # which the parser could not tell from the tag token. Blanks are the parser's four.
    text = f"TEXT: /[ \\t\\r\\n]*([^{{ \\t\\r\\n](.|\\n)*)?/ & ~/[ \\t\\r\\n]*{re.escape(fmt.open)}(.|\\n)*/"
    return "\n".join(["start: " + " | ".join(["TEXT", "calls", *tagged]), *rules, text])


_GRAMMARS = {"hermes": _hermes, "mistral": _mistral, "llama3_json": _llama3_json}
