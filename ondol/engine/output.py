"""Turning sampled tokens into a request's text: detokenizing, stop conditions, streaming hold-back.

One ``OutputProcessor`` per request. Invariant: the pieces it hands out, concatenated, are exactly
the final ``text`` — which is ``tokenizer.decode(token_ids)`` cut before the first stop string.
While the text ends in something that could still become a stop string, that tail is held back,
so a client never receives text that later turns out to be part of a stop string.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass, field

from ondol.engine.sampler import SamplingParams

if TYPE_CHECKING:
    from ondol.tokenizer import Tokenizer


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]]  # (token_id, logprob), most likely first


@dataclass
class Completion:
    """One finished generation. ``token_ids`` excludes a terminating end/stop token."""

    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (end token or stop string) | "length" (max_tokens or context full)
    prompt_token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None


class OutputProcessor:
    def __init__(self, tokenizer: Tokenizer, params: SamplingParams, max_new_tokens: int) -> None:
        self.params = params
        self.max_new_tokens = max_new_tokens  # max_tokens, or what the context has room for
        ends = set(params.stop_token_ids)
        if not params.ignore_eos:
            ends |= set(tokenizer.eos_token_ids)
        self.end_ids = frozenset(ends)
        self.detok = tokenizer.detokenizer(params.skip_special_tokens)
        self.token_ids: list[int] = []
        self.logprobs: list[TokenLogprob] | None = [] if params.logprobs is not None else None
        self.text = ""
        self.sent = 0  # text[:sent] has been handed out
        self.finish_reason: str | None = None

    def append(self, token_id: int, logprob: TokenLogprob | None = None) -> str:
        """Take one sampled token; return the text that is now safe to stream (maybe "")."""
        assert self.finish_reason is None, "request already finished"
        if token_id in self.end_ids:
            return self._finish("stop", self.detok.flush())
        self.token_ids.append(token_id)
        if logprob is not None and self.logprobs is not None:
            self.logprobs.append(logprob)
        start = len(self.text)
        self.text += self.detok.add(token_id)
        if self.params.stop and self._cut_at_stop(start):
            return self._finish("stop", "")
        if len(self.token_ids) >= self.max_new_tokens:
            return self._finish("length", self.detok.flush())
        safe = len(self.text) - self._held_back()
        piece = self.text[self.sent : safe]
        self.sent = max(self.sent, safe)
        return piece

    def finish(self, reason: str) -> str:
        """End the output now (its grammar is complete); return the text still held back."""
        return self._finish(reason, self.detok.flush())

    def _finish(self, reason: str, rest: str) -> str:
        self.text += rest
        if rest and self.params.stop and self._cut_at_stop(len(self.text) - len(rest)):
            reason = "stop"
        self.finish_reason = reason
        piece, self.sent = self.text[self.sent :], len(self.text)
        return piece

    def _cut_at_stop(self, new_from: int) -> bool:
        """Cut text before the earliest stop string that ends in the new text; True if one did."""
        longest = max(map(len, self.params.stop))
        window_start = max(0, new_from - longest + 1)
        hits = [i for s in self.params.stop if (i := self.text.find(s, window_start)) != -1]
        if not hits:
            return False
        self.text = self.text[: min(hits)]
        return True

    def _held_back(self) -> int:
        """Length of the longest tail of text that is a proper prefix of a stop string."""
        held = 0
        for s in self.params.stop:
            for k in range(min(len(s) - 1, len(self.text)), held, -1):
                if self.text.endswith(s[:k]):
                    held = k
                    break
        return held

    def completion(self, prompt_token_ids: list[int]) -> Completion:
        assert self.finish_reason is not None
        return Completion(self.text, self.token_ids, self.finish_reason, prompt_token_ids, self.logprobs)
