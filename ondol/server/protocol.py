"""OpenAI's wire format for the endpoints ondol serves, and the conversions to and from the engine.

Requests are validated here (unknown fields are ignored, wrong types and out-of-range values are a
400 in the routes); ``sampling_params`` is the one place a request becomes ``SamplingParams``;
``LogprobFormatter`` turns the engine's ``TokenLogprob`` into the chat or the completions format.
Streaming chunks omit the fields OpenAI omits (a delta without role, usage before the last chunk).
"""

from __future__ import annotations

import codecs
import dataclasses
import re
import time
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

from ondol.constrained.chat import template_messages
from ondol.constrained.tool_calls import ToolCall, ToolCallDelta
from ondol.engine.output import TokenLogprob
from ondol.engine.sampler import SamplingParams
from ondol.tokenizer.gguf_vocab import byte_level_alphabet
from ondol.errors import InvalidRequestError

if TYPE_CHECKING:
    from ondol.tokenizer import Tokenizer

MAX_N = 16
MAX_STOP = 4
SEED_MASK = (1 << 64) - 1  # torch seeds are 64-bit; seed + i wraps around


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")

    # Fields left out of the JSON while None (OpenAI omits them rather than sending null).
    _omit_if_none: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit(self, handler: Any) -> Any:
        data = handler(self)
        if self._omit_if_none and isinstance(data, dict):
            for key in self._omit_if_none:
                if data.get(key, 0) is None:
                    del data[key]
        return data


# --- errors -----------------------------------------------------------------------------------------

class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


# --- requests ---------------------------------------------------------------------------------------

class StreamOptions(_Request):
    include_usage: bool = False


class TextPart(_Request):
    type: Literal["text"]
    text: str


class FunctionCall(_Request):
    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCallParam(_Request):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallParam] | None = None  # an assistant turn that called tools
    tool_call_id: str | None = None  # a tool result: the call it answers


class _SamplingFields(_Request):
    """Fields shared by chat and completions, OpenAI's and vLLM's extras."""

    model: str
    n: int = Field(1, ge=1, le=MAX_N)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP)] | None = None
    seed: int | None = Field(None, ge=-(1 << 63), le=SEED_MASK)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[int, float] | None = None  # token ids arrive as JSON object keys ("42")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # {"type": "text" | "json_object" | "json_schema", ...}: checked by ondol.constrained.chat
    response_format: dict[str, Any] | None = None
    # vLLM-style extras
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, ge=0.01, le=100)  # beyond, logits overflow
    ignore_eos: bool = False

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    # OpenAI's forms, checked by ondol.constrained.chat (one set of rules for the server and LLM.chat)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True

    def template_messages(self) -> list[dict[str, Any]]:
        return template_messages([m.model_dump(exclude_none=True) for m in self.messages])


PromptInput = str | list[int] | list[str] | list[list[int]]


class CompletionRequest(_SamplingFields):
    prompt: PromptInput
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool | None = False
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, v: PromptInput) -> PromptInput:
        if isinstance(v, list) and (not v or any(isinstance(p, list) and not p for p in v)):
            raise ValueError("prompt must not be an empty list")
        return v

    def prompts(self) -> list[str | list[int]]:
        """One entry per prompt: text, or token ids."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and isinstance(p[0], int):
            return [list(p)]  # type: ignore[arg-type]
        return list(p)  # type: ignore[arg-type]


def sampling_params(req: ChatCompletionRequest | CompletionRequest, defaults: SamplingParams,
                    max_model_len: int) -> list[SamplingParams]:
    """One SamplingParams per choice (``n`` of them; choice i gets seed + i). Fields the request
    leaves out keep the model's defaults; ``max_tokens`` beyond the context is capped by it (the
    request then ends with "length"). Raises InvalidRequestError for combinations OpenAI refuses."""
    if isinstance(req, ChatCompletionRequest):
        max_tokens = req.max_completion_tokens or req.max_tokens
        if req.top_logprobs and not req.logprobs:
            raise InvalidRequestError("top_logprobs requires logprobs to be true.")
        logprobs = (req.top_logprobs or 0) if req.logprobs else None
    else:
        max_tokens = req.max_tokens if req.max_tokens is not None else 16  # OpenAI's default for completions
        logprobs = req.logprobs
        if req.echo:
            raise InvalidRequestError("echo is not supported.")
        if req.suffix:
            raise InvalidRequestError("suffix is not supported.")
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    given: dict[str, Any] = {
        "max_tokens": min(max_tokens, max_model_len) if max_tokens is not None else None,
        "temperature": req.temperature,  # SamplingParams treats anything below 1e-5 as greedy
        "top_p": None if req.top_p is None else max(req.top_p, 1e-9),  # top_p 0: the most likely token only
        "top_k": req.top_k,
        "min_p": req.min_p,
        "repetition_penalty": req.repetition_penalty,
        "presence_penalty": req.presence_penalty,
        "frequency_penalty": req.frequency_penalty,
        "stop": tuple(s for s in stop if s),
        "ignore_eos": req.ignore_eos,
        "logit_bias": req.logit_bias or {},
        "logprobs": logprobs,
    }
    base = dataclasses.replace(defaults, **{k: v for k, v in given.items() if v is not None})
    if req.seed is None:
        return [base] * req.n
    return [dataclasses.replace(base, seed=(req.seed + i) & SEED_MASK) for i in range(req.n)]


# --- responses --------------------------------------------------------------------------------------

class PromptTokensDetails(_Response):
    cached_tokens: int = 0


class Usage(_Response):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> Usage:
        return cls(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                   total_tokens=prompt_tokens + completion_tokens,
                   prompt_tokens_details=PromptTokensDetails(cached_tokens=cached_tokens))


class TopLogprob(_Response):
    token: str
    logprob: float
    bytes: list[int] | None = None


class ChatLogprobToken(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChatLogprobs(_Response):
    content: list[ChatLogprobToken] | None = None


class CompletionLogprobs(_Response):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class FunctionCallOut(_Response):
    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCallOut(_Response):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut

    @classmethod
    def of(cls, call: ToolCall) -> ToolCallOut:
        return cls(id=call.id, function=FunctionCallOut(name=call.name, arguments=call.arguments))


class AssistantMessage(_Response):
    _omit_if_none = frozenset({"tool_calls"})
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCallOut] | None = None


class DeltaFunction(_Response):
    _omit_if_none = frozenset({"name", "arguments"})
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(_Response):
    """One streamed piece of a tool call: the first carries id, type and name (and arguments "");
    the rest carry only index and an arguments fragment, as OpenAI streams them."""

    _omit_if_none = frozenset({"id", "type"})
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunction

    @classmethod
    def of(cls, delta: ToolCallDelta) -> DeltaToolCall:
        if delta.id is not None:
            return cls(index=delta.index, id=delta.id, type="function",
                       function=DeltaFunction(name=delta.name, arguments=delta.arguments))
        return cls(index=delta.index, function=DeltaFunction(arguments=delta.arguments))


class ChatCompletionChoice(_Response):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionResponse(_Response):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatCompletionChoice]
    usage: Usage


class DeltaMessage(_Response):
    _omit_if_none = frozenset({"role", "content", "tool_calls"})
    role: str | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None


class ChatStreamChoice(_Response):
    index: int
    delta: DeltaMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(_Response):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    _omit_if_none = frozenset({"usage"})
    choices: list[ChatStreamChoice]
    usage: Usage | None = None


class CompletionChoice(_Response):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None


class CompletionResponse(_Response):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    _omit_if_none = frozenset({"usage"})
    choices: list[CompletionChoice]
    usage: Usage | None = None


CompletionChunk = CompletionResponse  # OpenAI streams completions as partial text_completion objects


class ModelCard(_Response):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "ondol"
    root: str | None = None
    max_model_len: int | None = None


class ModelList(_Response):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# --- logprobs ---------------------------------------------------------------------------------------

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


_BYTE_LEVEL = byte_level_alphabet()


class LogprobFormatter:
    """Token ids -> the strings and UTF-8 bytes OpenAI reports for them (cached per id).

    A token that is only part of a character (a byte-level or byte-fallback piece of a Korean
    syllable, say) is shown as OpenAI shows it, ``bytes:\\xea\\xb0``, with its exact bytes."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self._cache: dict[int, tuple[str, list[int]]] = {}

    def token(self, token_id: int) -> tuple[str, list[int]]:
        hit = self._cache.get(token_id)
        if hit is None:
            raw = self._bytes(token_id)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = "bytes:" + "".join(f"\\x{b:02x}" for b in raw)
            hit = self._cache[token_id] = (text, list(raw))
        return hit

    def _bytes(self, token_id: int) -> bytes:
        text = self.tokenizer.decode([token_id], skip_special_tokens=False)
        if "\ufffd" not in text:
            return text.encode("utf-8")
        piece = self.tokenizer.id_to_token(token_id) or ""
        if m := _BYTE_TOKEN.fullmatch(piece):
            return bytes([int(m.group(1), 16)])
        if piece and all(c in _BYTE_LEVEL for c in piece):
            return bytes(_BYTE_LEVEL[c] for c in piece)
        return text.encode("utf-8")

    def chat(self, logprobs: list[TokenLogprob]) -> list[ChatLogprobToken]:
        out = []
        for lp in logprobs:
            text, raw = self.token(lp.token_id)
            top = [TopLogprob(token=t, logprob=v, bytes=b) for t, b, v in
                   ((*self.token(i), v) for i, v in lp.top)]
            out.append(ChatLogprobToken(token=text, logprob=lp.logprob, bytes=raw, top_logprobs=top))
        return out

    def completion(self, logprobs: list[TokenLogprob], offsets: TextOffsets) -> CompletionLogprobs:
        """Completions-format logprobs; ``offsets`` carries one choice's text position across chunks."""
        out = CompletionLogprobs()
        for lp in logprobs:
            text, raw = self.token(lp.token_id)
            out.tokens.append(text)
            out.token_logprobs.append(lp.logprob)
            out.top_logprobs.append({self.token(i)[0]: v for i, v in lp.top})
            out.text_offset.append(offsets.advance(bytes(raw)))
        return out


class TextOffsets:
    """Character offset of each token in the generated text, counting a character split across
    tokens once, where it starts."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._chars = 0

    def advance(self, token_bytes: bytes) -> int:
        start = self._chars
        self._chars += len(self._decoder.decode(token_bytes))
        return start
