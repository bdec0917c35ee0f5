"""The generation loop: prompt ids + SamplingParams -> streamed text and a Completion.

One ``Generation`` is one request: chunked prefill of the prompt into a KV cache, then one decode
step per token, each step sampling from the last position's logits. Everything model-specific is
behind ``model(tokens, positions, cache, select)``; everything text-specific is in OutputProcessor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import secrets
from collections.abc import Iterator

import torch

from ondol.engine.kv_cache import ContiguousKVCache
from ondol.engine.output import Completion, OutputProcessor, TokenLogprob
from ondol.engine.sampler import SamplingParams, apply_penalties, logprobs_of, sample
from ondol.errors import InvalidRequestError
from ondol.model import LlamaForCausalLM

if TYPE_CHECKING:
    from ondol.tokenizer import Tokenizer

PREFILL_CHUNK = 512  # prompt tokens per forward: bounds the [T, S] attention scratch of long prompts
INITIAL_CACHE = 1024  # cache slots reserved beyond the prompt before the cache starts doubling


class Engine:
    def __init__(self, model: LlamaForCausalLM, tokenizer: Tokenizer, max_model_len: int) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len

    def check_prompt(self, prompt_ids: list[int]) -> None:
        if not prompt_ids:
            raise InvalidRequestError("The prompt is empty.")
        if len(prompt_ids) >= self.max_model_len:
            raise InvalidRequestError(
                f"The prompt has {len(prompt_ids)} tokens, but the context holds {self.max_model_len}: "
                "shorten the prompt (or raise max_model_len if the model allows)."
            )
        vocab = self.model.config.vocab_size
        bad = [t for t in prompt_ids if not 0 <= t < vocab]
        if bad:
            raise InvalidRequestError(f"Token id {bad[0]} is outside the vocabulary (0..{vocab - 1}).")

    def start(self, prompt_ids: list[int], params: SamplingParams) -> Generation:
        self.check_prompt(prompt_ids)
        return Generation(self, list(prompt_ids), params)

    def generate(self, prompt_ids: list[int], params: SamplingParams) -> Completion:
        gen = self.start(prompt_ids, params)
        for _ in gen:
            pass
        return gen.completion


class Generation:
    """Iterate for text pieces; ``completion`` is set once iteration ends."""

    def __init__(self, engine: Engine, prompt_ids: list[int], params: SamplingParams) -> None:
        self.engine, self.prompt_ids, self.params = engine, prompt_ids, params
        room = engine.max_model_len - len(prompt_ids)
        self.output = OutputProcessor(engine.tokenizer, params, min(params.max_tokens or room, room))
        self.completion: Completion | None = None

    def __iter__(self) -> Iterator[str]:
        model, params, out = self.engine.model, self.params, self.output
        n = len(self.prompt_ids)
        cache = ContiguousKVCache(model.config, self.engine.max_model_len, model.dtype,
                                  capacity=n + min(out.max_new_tokens, INITIAL_CACHE))
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        generator = torch.Generator().manual_seed(seed)
        vocab = model.config.vocab_size
        seen = torch.zeros(vocab, dtype=torch.bool)
        counts = torch.zeros(vocab)
        seen[torch.tensor(self.prompt_ids)] = True
        penalized = params.repetition_penalty != 1 or params.presence_penalty or params.frequency_penalty

        tokens = torch.tensor(self.prompt_ids)
        for start in range(0, n, PREFILL_CHUNK):
            chunk = tokens[start : start + PREFILL_CHUNK]
            positions = torch.arange(start, start + len(chunk))
            logits = model(chunk[None], positions[None], cache, select=torch.tensor([len(chunk) - 1]))
        pos = n
        while True:
            raw = logits[0, -1]
            scores = apply_penalties(raw, params, seen, counts) if penalized else raw
            token = sample(scores, params, generator)
            lp = None
            if params.logprobs is not None:
                lp = TokenLogprob(token, *logprobs_of(raw, token, params.logprobs))
            piece = out.append(token, lp)
            if piece:
                yield piece
            if out.finish_reason is not None:
                break
            seen[token] = True
            counts[token] += 1
            logits = model(torch.tensor([[token]]), torch.tensor([[pos]]), cache)
            pos += 1
        self.completion = out.completion(self.prompt_ids)
