"""The model runner: one SchedulerOutput in, the logits of every request that samples out.

All scheduled tokens of all requests are flattened into one [1, T] batch with their own positions;
the PagedStep built from the requests' block tables tells each layer where to store keys and which
keys each query sees.
"""

from __future__ import annotations

import torch

from ondol.engine.kv_cache import PagedKVCache, SeqSpan
from ondol.engine.request import SchedulerOutput
from ondol.model import LlamaForCausalLM


class ModelRunner:
    def __init__(self, model: LlamaForCausalLM, kv: PagedKVCache) -> None:
        self.model, self.kv = model, kv

    @torch.inference_mode()
    def execute(self, out: SchedulerOutput) -> torch.Tensor:
        """Float32 logits [S, V] for the S scheduled requests that sample, in schedule order."""
        tokens: list[int] = []
        positions: list[int] = []
        spans: list[SeqSpan] = []
        select: list[int] = []
        for s in out.scheduled:
            end = s.start + s.num_new_tokens
            spans.append(SeqSpan(s.request.block_ids, s.start, s.num_new_tokens, len(tokens)))
            tokens += s.request.all_token_ids[s.start : end]
            positions += range(s.start, end)
            if s.samples:
                select.append(len(tokens) - 1)
        if not select:
            select = [len(tokens) - 1]  # a step of prompt chunks only: compute one row, ignored
        logits = self.model(torch.tensor([tokens]), torch.tensor([positions]), self.kv.step(spans),
                            select=torch.tensor(select))
        return logits[0]
