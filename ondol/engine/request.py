"""A request's bookkeeping, in the manner of vLLM's v1 scheduler.

There are no prefill and decode phases: a request is its token ids (prompt, then output) and how
many of them are in the KV cache (``num_computed_tokens``). Each step the scheduler gives it some
number of new tokens to compute — a chunk of the prompt, or the one token sampled last step — and
once every known token is computed, the step's logits yield the next token.

Invariants:
* ``num_computed_tokens <= len(all_token_ids)``; the request samples only when, after a step, they
  are equal.
* ``block_ids`` hold exactly ``ceil(num_computed_tokens / block_size)`` blocks at the end of each
  step (the scheduler allocates before the step for the tokens it schedules).
* A preempted request keeps its output tokens and its random generator, drops its blocks and is
  recomputed from token 0 (prefix caching usually makes that cheap); its output is unchanged.
"""

from __future__ import annotations

import enum
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from ondol.constrained.grammar import GrammarMatcher
from ondol.engine.output import OutputProcessor, TokenLogprob
from ondol.engine.sampler import SamplingParams

if TYPE_CHECKING:
    from ondol.tokenizer import Tokenizer


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass
class RequestOutput:
    """What one step produced for one request: the new text and tokens since its last output."""

    request_id: str
    text: str  # new text, safe to stream (never a broken character, never part of a stop string)
    token_ids: list[int]  # new tokens sampled this step (empty while a prompt is prefilled)
    logprobs: list[TokenLogprob] | None
    finished: bool
    finish_reason: str | None  # "stop" | "length" | "abort" | "error", once finished
    prompt_tokens: int
    completion_tokens: int  # output tokens so far
    cached_tokens: int = 0  # prompt tokens served from the prefix cache
    error: str | None = None  # with finish_reason "error": what went wrong (a bug, logged)


class Request:
    def __init__(self, request_id: str, prompt_ids: list[int], params: SamplingParams, tokenizer: Tokenizer,
                 max_new_tokens: int, vocab_size: int) -> None:
        self.request_id = request_id
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.all_token_ids = list(prompt_ids)  # prompt, then output tokens as they are sampled
        self.num_computed_tokens = 0
        self.num_cached_tokens = 0  # prompt tokens the prefix cache supplied at first admission
        self.admitted_before = False
        self.block_ids: list[int] = []
        self.block_hashes: list[int] = []  # hashes of this request's full blocks, in order
        self.status = Status.WAITING
        self.output = OutputProcessor(tokenizer, params, max_new_tokens)
        self.pending_logprobs: list[TokenLogprob] | None = [] if params.logprobs is not None else None
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        self.generator = torch.Generator().manual_seed(seed)
        self.grammar: GrammarMatcher | None = None  # set by the engine when params.grammar is given
        self.error: str | None = None  # set when a bug ended this request alone (finish reason "error")
        self.arrival_time = time.monotonic()
        self.first_token_time: float | None = None
        self._vocab = vocab_size
        self._seen: torch.Tensor | None = None
        self._counts: torch.Tensor | None = None

    @property
    def num_tokens(self) -> int:
        return len(self.all_token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.all_token_ids) - len(self.prompt_ids)

    @property
    def finished(self) -> bool:
        return self.status is Status.FINISHED

    def penalty_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(seen [V] bool over prompt+output, counts [V] float over output), built lazily: only
        requests with penalties pay for them."""
        if self._seen is None:
            self._seen = torch.zeros(self._vocab, dtype=torch.bool)
            self._seen[torch.tensor(self.all_token_ids)] = True
            self._counts = torch.zeros(self._vocab)
            for t in self.all_token_ids[len(self.prompt_ids):]:
                self._counts[t] += 1
        return self._seen, self._counts

    def append_token(self, token: int) -> None:
        self.all_token_ids.append(token)
        if self._seen is not None:
            self._seen[token] = True
            self._counts[token] += 1


@dataclass
class ScheduledRequest:
    request: Request
    num_new_tokens: int  # tokens computed this step: all_token_ids[start : start + num_new_tokens]
    start: int  # == request.num_computed_tokens when scheduled

    @property
    def samples(self) -> bool:
        """True when this step computes the request's last known token, so its logits are sampled."""
        return self.start + self.num_new_tokens == self.request.num_tokens


@dataclass
class SchedulerOutput:
    """The contract between scheduler and runner: what to compute this step, in batch order.
    Block tables are already allocated for every scheduled token."""

    scheduled: list[ScheduledRequest] = field(default_factory=list)
    preempted: list[Request] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(s.num_new_tokens for s in self.scheduled)
