"""Grammar-constrained decoding over llguidance: what a request asks for, compiled once, matched per request.

* ``Grammar`` is what a request's output must match: a JSON schema, any JSON object, a Lark grammar
  (llguidance's dialect, which can inline ``%json {...}`` and refer to special tokens) or a regex.
  It is frozen and hashable, so it rides in ``SamplingParams``.
* ``GrammarCompiler`` belongs to one tokenizer and model vocabulary. It turns a Grammar into a
  compiled llguidance matcher, refusing what cannot be enforced with an ``InvalidRequestError``
  that says why (an unsupported JSON Schema keyword is named), and keeps the compiled templates in
  an LRU keyed by the grammar: a schema seen before costs a ~1 µs copy, not a compile.
* ``GrammarMatcher`` is one request's state: it fills its row of a token bitmask, accepts sampled
  tokens, rolls back, and says when the grammar has terminated.

Why llguidance, and what it costs on this kind of CPU: docs/constrained-decoding-libraries.md.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import llguidance as llg
import torch

from ondol.constrained.bitmask import allocate_bitmask
from ondol.constrained.schema import check_schema
from ondol.errors import InvalidRequestError

if TYPE_CHECKING:
    from ondol.tokenizer import Tokenizer

# JSON is written the way json.dumps writes it, with no freedom in whitespace: a small model
# given the choice can pad a document with newlines until max_tokens, and every token spent on
# whitespace is a decode step on a device CPU. A schema may still opt in with "x-guidance".
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

KINDS = ("json_schema", "json_object", "lark", "regex")


@dataclass(frozen=True)
class Grammar:
    """What a request's output must match. Build it with the class methods.

    ``lazy`` marks grammars whose output is mostly free text (a tool call that may or may not
    begin): the engine then samples first and masks only when the grammar refuses the token,
    because a full mask in free text scans the whole vocabulary (~2 ms at 128k tokens)."""

    kind: str
    source: str  # the schema as JSON text, the Lark grammar, or the regex
    lazy: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidRequestError(f"Unknown grammar kind {self.kind!r}; use one of {', '.join(KINDS)}.")

    @classmethod
    def json_schema(cls, schema: dict[str, Any] | str) -> Grammar:
        """Output is one JSON document valid under ``schema`` (a dict or its JSON text)."""
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except (json.JSONDecodeError, RecursionError) as e:
                raise InvalidRequestError(f"The JSON schema is not valid JSON: {e}.") from None
        if not isinstance(schema, dict):
            got = "true" if schema is True else "false" if schema is False else type(schema).__name__
            raise InvalidRequestError(f"A JSON schema must be a JSON object here, not {got} "
                                      "(the empty schema {} allows any JSON document).")
        try:
            # Key order is kept: llguidance writes properties in schema order.
            text = json.dumps(schema, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as e:
            raise InvalidRequestError(f"The JSON schema cannot be written as JSON: {e}.") from None
        return cls("json_schema", text)

    @classmethod
    def json_object(cls) -> Grammar:
        """Output is any JSON object (OpenAI's ``response_format: {"type": "json_object"}``)."""
        return cls("json_object", '{"type": "object"}')

    @classmethod
    def lark(cls, source: str, lazy: bool = False) -> Grammar:
        return cls("lark", source, lazy)

    @classmethod
    def regex(cls, pattern: str) -> Grammar:
        return cls("regex", pattern)

    def to_llguidance(self) -> str:
        """The grammar in llguidance's serialized form (no compilation, no validation)."""
        if self.kind in ("json_schema", "json_object"):
            schema = json.loads(self.source)
            if self.kind == "json_schema":
                check_schema(schema)
            return llg.LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)
        if self.kind == "lark":
            return llg.LLMatcher.grammar_from_lark(self.source)
        return llg.LLMatcher.grammar_from_regex(self.source)


class GrammarCompiler:
    """Compiles grammars for one tokenizer and model vocabulary; thread-safe (the server checks
    requests on its event loop while the engine thread starts them).

    ``vocab_size`` is the model's (its lm_head rows), which may exceed the tokenizer's: ids past
    the tokenizer are never allowed. The llguidance tokenizer is built on first use (~0.2 s and
    ~40 MB for 32k tokens, ~0.8 s and ~140 MB for 128k), so models never asked for structure never
    pay for it."""

    def __init__(self, tokenizer: Tokenizer, vocab_size: int, cache_size: int = 128) -> None:
        self.tokenizer, self.vocab_size, self.cache_size = tokenizer, vocab_size, cache_size
        self._cache: OrderedDict[Grammar, llg.LLMatcher] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @cached_property
    def ll_tokenizer(self) -> llg.LLTokenizer:
        return llg.LLTokenizer(self.tokenizer.to_json(), n_vocab=self.vocab_size,
                               eos_token=list(self.tokenizer.eos_token_ids))

    def warm_up(self) -> None:
        """Build the llguidance tokenizer now (the server does this while loading)."""
        with self._lock:
            self.ll_tokenizer  # noqa: B018

    def compile(self, grammar: Grammar) -> llg.LLMatcher:
        """The compiled template for ``grammar`` (from the cache when seen before). Raises
        InvalidRequestError if it cannot be enforced."""
        with self._lock:
            template = self._cache.get(grammar)
            if template is not None:
                self._cache.move_to_end(grammar)
                self.hits += 1
                return template
            self.misses += 1
            template = self._compile(grammar)
            self._cache[grammar] = template
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return template

    def _compile(self, grammar: Grammar) -> llg.LLMatcher:
        try:
            serialized = grammar.to_llguidance()
        except ValueError as e:  # llguidance: the schema or options are not a JSON object
            raise InvalidRequestError(f"Invalid {_what(grammar)}: {e}.") from None
        is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(serialized, self.ll_tokenizer)
        if is_error:
            raise InvalidRequestError(f"The {_what(grammar)} cannot be enforced: {_clean(messages[0])}")
        template = llg.LLMatcher(self.ll_tokenizer, serialized, log_level=0)
        if template.is_error():
            raise InvalidRequestError(f"The {_what(grammar)} cannot be enforced: {_clean(template.get_error())}")
        self._probe(grammar, template)
        return template

    def _probe(self, grammar: Grammar, template: llg.LLMatcher) -> None:
        """Compute a fresh copy's first mask, so a grammar that dead-ends at once (llguidance compiles
        some that allow nothing) is this request's 400, not an engine step's failure."""
        probe = GrammarMatcher(template.deep_copy(), grammar.lazy, self.vocab_size)
        mask = allocate_bitmask(1, self.vocab_size)
        probe.fill_bitmask(mask, 0)
        if probe.error is not None or (not bool(mask.any()) and not probe.is_accepting):
            raise InvalidRequestError(f"The {_what(grammar)} cannot be enforced: it allows no output at all.")

    def matcher(self, grammar: Grammar) -> GrammarMatcher:
        return GrammarMatcher(self.compile(grammar).deep_copy(), grammar.lazy, self.vocab_size)


def _what(grammar: Grammar) -> str:
    return {"json_schema": "JSON schema", "json_object": "JSON object grammar", "lark": "grammar",
            "regex": "regex"}[grammar.kind]


def _clean(message: str) -> str:
    message = message.strip()
    return message if message.endswith(".") else message + "."


class GrammarMatcher:
    """One request's position in its grammar.

    The engine's protocol per sampled token: ``fill_bitmask`` (skipped for lazy grammars until a
    token is refused), sample under the mask, ``accept``; after accepting, ``is_terminated`` says
    the grammar allows nothing but an end token, so the request can finish."""

    def __init__(self, matcher: llg.LLMatcher, lazy: bool, vocab_size: int) -> None:
        self._m = matcher
        self.lazy = lazy
        self.vocab_size = vocab_size
        self.num_accepted = 0

    @property
    def bitmask_words(self) -> int:
        return (self.vocab_size + 31) // 32

    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        """Write the allowed next tokens into ``bitmask[row]`` (int32 [N, ceil(V/32)], CPU, bit t%32 of
        word t//32 set when token t is allowed)."""
        assert bitmask.dtype == torch.int32 and bitmask.is_contiguous() and bitmask.shape[1] == self.bitmask_words
        self._m.unsafe_compute_mask_ptr(bitmask[row].data_ptr(), self.bitmask_words * 4)

    def allows(self, token: int) -> bool:
        """Whether ``token`` may come next (nothing is consumed)."""
        return self._m.validate_tokens([token]) == 1

    def accept(self, token: int) -> bool:
        """Advance past ``token``; False (and the state unchanged) if the grammar refuses it."""
        if self._m.try_consume_tokens([token]) != 1:
            return False
        self.num_accepted += 1
        return True

    def rollback(self, num_tokens: int) -> None:
        """Undo the last ``num_tokens`` accepted tokens."""
        if not 0 <= num_tokens <= self.num_accepted or not self._m.rollback(num_tokens):
            raise ValueError(f"cannot roll back {num_tokens} of {self.num_accepted} tokens")
        self.num_accepted -= num_tokens

    @property
    def is_terminated(self) -> bool:
        """Nothing but an end token can follow: the output is complete."""
        return self._m.is_stopped()

    @property
    def is_accepting(self) -> bool:
        """The output so far is a complete match (an end token is allowed here)."""
        return self._m.is_accepting()

    @property
    def error(self) -> str | None:
        return self._m.get_error() or None if self._m.is_error() else None
