"""The engine: requests in, streamed outputs out, many requests per forward.

``Engine`` is synchronous and single-threaded: ``add_request``/``abort_request`` between steps,
``step()`` runs one scheduler decision and one forward and returns each sampling request's new
text. ``LLM`` drives it directly; the server drives it from a background thread (AsyncEngine).

Per step: the scheduler picks tokens (decode tokens of running requests and chunks of waiting
prompts) and reserves their blocks; the runner computes them in one forward; each request whose
known tokens are now all computed samples one token with its own seeded generator; finished
requests free their blocks at once.
"""

from __future__ import annotations

import gc
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ondol.constrained.bitmask import allocate_bitmask, unpack_bitmask
from ondol.constrained.grammar import GrammarCompiler, GrammarMatcher
from ondol.engine.block_pool import BlockPool
from ondol.engine.kv_cache import PagedKVCache
from ondol.engine.output import Completion, TokenLogprob
from ondol.engine.request import Request, RequestOutput
from ondol.engine.runner import ModelRunner
from ondol.engine.sampler import (SamplingParams, apply_logit_bias, apply_penalties, ban_tokens, logprobs_of,
                                  sample, sample_allowed)
from ondol.engine.scheduler import Scheduler
from ondol.errors import InvalidRequestError
from ondol.model import LlamaForCausalLM

if TYPE_CHECKING:
    from ondol.tokenizer import Tokenizer

log = logging.getLogger("ondol.engine")


@dataclass(frozen=True)
class EngineConfig:
    max_model_len: int
    block_size: int = 16
    kv_cache_bytes: int = 1 << 30  # memory for the block pool (keys and values of every layer)
    num_kv_blocks: int | None = None  # set directly instead of kv_cache_bytes (tests force preemption)
    max_num_seqs: int = 64  # requests running at once
    max_num_batched_tokens: int = 512  # tokens per forward: decode tokens + prompt chunks
    enable_prefix_caching: bool = True

    def num_blocks(self, bytes_per_block: int) -> int:
        return self.num_kv_blocks or max(self.kv_cache_bytes // bytes_per_block, 1)


@dataclass(frozen=True)
class EngineStats:
    num_waiting: int
    num_running: int
    num_kv_blocks: int
    num_kv_blocks_used: int
    prefix_cache_queries: int  # prompt tokens looked up
    prefix_cache_hits: int  # prompt tokens found cached
    num_computed_tokens: int  # tokens run through the model (prompt chunks, decode, recomputation)
    num_prompt_tokens: int  # prompt tokens of admitted requests
    num_generated_tokens: int
    num_preemptions: int


class Engine:
    def __init__(self, model: LlamaForCausalLM, tokenizer: Tokenizer, config: EngineConfig) -> None:
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.max_model_len = config.max_model_len
        per_block = PagedKVCache.bytes_per_block(model.config, config.block_size, model.dtype)
        num_blocks = config.num_blocks(per_block)
        needed = -(-config.max_model_len // config.block_size)
        if num_blocks < needed:
            raise InvalidRequestError(
                f"The KV cache holds {num_blocks * config.block_size} tokens, fewer than one request of "
                f"max_model_len={config.max_model_len}; give it more memory or lower max_model_len.")
        self.pool = BlockPool(num_blocks, config.block_size, config.enable_prefix_caching)
        self.kv = PagedKVCache(model.config, num_blocks, config.block_size, model.dtype)
        self.scheduler = Scheduler(self.pool, config.max_num_seqs, config.max_num_batched_tokens)
        self.runner = ModelRunner(model, self.kv)
        self.requests: dict[str, Request] = {}
        self.grammars = GrammarCompiler(tokenizer, model.config.vocab_size)
        self._bitmask = allocate_bitmask(1, model.config.vocab_size)  # one row, refilled per constrained sample
        self._ids = itertools.count()
        self._computed = self._prompt = self._generated = 0
        # Everything made so far (modules, tensors, tokenizer and grammar tables) lives as long as the
        # engine. Frozen, it is out of the garbage collector's sight: the collections a step's small
        # objects trigger no longer walk it (they took ~5 % of a 1B int4 decode step).
        gc.collect()
        gc.freeze()

    # --- requests ---------------------------------------------------------------------------------

    def check_request(self, prompt_ids: list[int], params: SamplingParams) -> None:
        """Everything about a request that can be wrong, checked before it is queued."""
        self.check_prompt(prompt_ids)
        vocab = self.model.config.vocab_size
        bad = next((t for t, _ in params.logit_bias if not 0 <= t < vocab), None)
        if bad is not None:
            raise InvalidRequestError(f"logit_bias names token {bad}, outside the vocabulary (0..{vocab - 1}).")
        bad = next((t for t in params.banned_token_ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise InvalidRequestError(f"Banned token {bad} is outside the vocabulary (0..{vocab - 1}).")
        if params.grammar is not None:
            self.grammars.compile(params.grammar)  # cached: add_request reuses the compiled grammar

    def check_prompt(self, prompt_ids: list[int]) -> None:
        if not prompt_ids:
            raise InvalidRequestError("The prompt is empty.")
        if len(prompt_ids) >= self.max_model_len:
            raise InvalidRequestError(
                f"The prompt has {len(prompt_ids)} tokens, but the context holds {self.max_model_len}: "
                "shorten the prompt (or raise max_model_len if the model allows).")
        vocab = self.model.config.vocab_size
        bad = next((t for t in prompt_ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise InvalidRequestError(f"Token id {bad} is outside the vocabulary (0..{vocab - 1}).")

    def add_request(self, prompt_ids: list[int], params: SamplingParams, request_id: str | None = None) -> Request:
        self.check_request(prompt_ids, params)
        request_id = request_id if request_id is not None else f"req-{next(self._ids)}"
        if request_id in self.requests:
            raise InvalidRequestError(f"A request with id {request_id!r} is already running.")
        room = self.max_model_len - len(prompt_ids)
        req = Request(request_id, prompt_ids, params, self.tokenizer, min(params.max_tokens or room, room),
                      self.model.config.vocab_size)
        if params.grammar is not None:
            req.grammar = self.grammars.matcher(params.grammar)
        self.requests[request_id] = req
        self.scheduler.add(req)
        self._prompt += len(prompt_ids)
        return req

    def abort_request(self, request_id: str) -> None:
        req = self.requests.pop(request_id, None)
        if req is not None:
            self.scheduler.finish(req)
            req.output.finish_reason = req.output.finish_reason or "abort"

    def has_unfinished_requests(self) -> bool:
        return bool(self.requests)

    # --- one step ---------------------------------------------------------------------------------

    def step(self) -> list[RequestOutput]:
        out = self.scheduler.schedule()
        if not out.scheduled:
            return []
        logits = self.runner.execute(out)
        self.scheduler.after_step(out)
        self._computed += out.num_tokens
        outputs = []
        rows = iter(logits)
        for s in out.scheduled:
            if s.samples:
                row = next(rows)
                try:
                    outputs.append(self._sample(s.request, row))
                except Exception as e:  # a bug met by one request fails that request, not the batch
                    log.exception("request %s failed while sampling", s.request.request_id)
                    outputs.append(self._fail(s.request, f"{type(e).__name__}: {e}"))
        return outputs

    def _fail(self, req: Request, message: str) -> RequestOutput:
        """Finish ``req`` with finish reason "error" and free its blocks; the others run on."""
        req.error = message
        req.output.finish_reason = "error"
        if req.request_id in self.requests:
            self.scheduler.finish(req)
            del self.requests[req.request_id]
        return RequestOutput(req.request_id, "", [], None, True, "error", len(req.prompt_ids),
                             len(req.output.token_ids), req.num_cached_tokens, error=message)

    def _sample(self, req: Request, raw: torch.Tensor) -> RequestOutput:
        params = req.params
        scores = ban_tokens(apply_logit_bias(raw, params), params)
        if params.repetition_penalty != 1 or params.presence_penalty or params.frequency_penalty:
            scores = apply_penalties(scores, params, *req.penalty_state())
        if req.grammar is None:
            token = sample(scores, params, req.generator)
        else:
            token = self._sample_constrained(req, req.grammar, scores)
        lp = TokenLogprob(token, *logprobs_of(raw, token, params.logprobs)) if params.logprobs is not None else None
        text = req.output.append(token, lp)
        req.append_token(token)
        self._generated += 1
        if req.grammar is not None and req.output.finish_reason is None and req.grammar.is_terminated:
            text += req.output.finish("stop")  # complete: only an end token could follow
        finished = req.output.finish_reason is not None
        if finished:
            self.scheduler.finish(req)
            del self.requests[req.request_id]
        return RequestOutput(req.request_id, text, [token], [lp] if lp else None, finished, req.output.finish_reason,
                             len(req.prompt_ids), len(req.output.token_ids), req.num_cached_tokens)

    def _sample_constrained(self, req: Request, grammar: GrammarMatcher, scores: torch.Tensor) -> int:
        """Sample a token the grammar allows and advance the grammar past it.

        Eager grammars (JSON) are masked before sampling. Lazy ones (free text that may begin a
        tool call) sample first and mask only if the token is refused: a mask in free text scans
        the whole vocabulary, and drawing from p, then from p restricted to the allowed set when
        the draw is refused, gives exactly the masked distribution (top-k/top-p/min-p aside, which
        then filter the unmasked distribution first)."""
        params, ends = req.params, req.output.end_ids
        if grammar.lazy:
            token = sample(scores, params, req.generator)
            if self._advance(grammar, token, ends):
                return token
        grammar.fill_bitmask(self._bitmask, 0)
        allowed = unpack_bitmask(self._bitmask[0], scores.shape[-1])
        token = sample_allowed(scores, allowed, params, req.generator)
        if self._advance(grammar, token, ends):
            return token
        # Only when no allowed token had a finite score (all of them banned, say): take the first
        # allowed one rather than fail the batch or leave the grammar.
        log.warning("request %s: no token its grammar allows could be sampled", req.request_id)
        token = int(np.flatnonzero(allowed)[0])
        if not self._advance(grammar, token, ends):
            raise RuntimeError(f"grammar of request {req.request_id} refused its own mask: {grammar.error}")
        return token

    @staticmethod
    def _advance(grammar: GrammarMatcher, token: int, ends: frozenset[int]) -> bool:
        if token in ends:  # an end token is allowed exactly where the output is complete
            return grammar.is_accepting
        return grammar.accept(token)

    @property
    def stats(self) -> EngineStats:
        return EngineStats(
            num_waiting=self.scheduler.num_waiting, num_running=self.scheduler.num_running,
            num_kv_blocks=self.pool.num_blocks, num_kv_blocks_used=self.pool.num_used,
            prefix_cache_queries=self.pool.queries, prefix_cache_hits=self.pool.hits,
            num_computed_tokens=self._computed, num_prompt_tokens=self._prompt,
            num_generated_tokens=self._generated, num_preemptions=self.scheduler.num_preemptions)

    # --- synchronous use (LLM) -------------------------------------------------------------------

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        """Run prompts as one batch to completion; results in prompt order."""
        for p in prompts:
            self.check_request(p, params)  # reject the batch before any of it runs
        reqs = [self.add_request(p, params) for p in prompts]
        try:
            while any(not r.finished for r in reqs):
                self.step()
        finally:
            for r in reqs:
                self.abort_request(r.request_id)  # no-op for finished ones
        failed = next((r for r in reqs if r.error is not None), None)
        if failed is not None:
            raise RuntimeError(f"generation failed (a bug in ondol): {failed.error}")
        return [r.output.completion(r.prompt_ids) for r in reqs]

    def stream(self, prompt_ids: list[int], params: SamplingParams) -> Generation:
        return Generation(self, self.add_request(prompt_ids, params))


class Generation:
    """Iterate for one request's text pieces; ``completion`` is set once it has finished.
    Stopping the iteration early aborts the request."""

    def __init__(self, engine: Engine, request: Request) -> None:
        self.engine, self.request = engine, request
        self.completion: Completion | None = None

    def __iter__(self) -> Iterator[str]:
        req = self.request
        try:
            while not req.finished:
                for o in self.engine.step():
                    if o.request_id == req.request_id and o.text:
                        yield o.text
        finally:
            self.engine.abort_request(req.request_id)
        self.completion = req.output.completion(req.prompt_ids)
