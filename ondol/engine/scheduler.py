"""The token-budget scheduler.

Each step has a budget of ``max_num_batched_tokens``. Running requests come first, in admission
order: each gets the tokens it has not computed yet (one, when decoding; the rest of its prompt, or
as much as the budget allows, when prefilling). Waiting requests are then admitted, oldest first,
while budget, sequence slots and blocks last; an admitted prompt that does not fit the budget is
prefilled in chunks over several steps. Decode tokens and prompt chunks thus share one forward.

When a running request needs a block and none is free, the most recently admitted running request
is preempted: its blocks return to the pool and it goes back to the front of the queue, to be
recomputed later (its output so far is kept). Nothing new is admitted in a step that preempted.
"""

from __future__ import annotations

from collections import deque

from ondol.engine.block_pool import ROOT_HASH, BlockPool, block_hash
from ondol.engine.request import Request, ScheduledRequest, SchedulerOutput, Status


class Scheduler:
    def __init__(self, pool: BlockPool, max_num_seqs: int, max_num_batched_tokens: int) -> None:
        self.pool = pool
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.num_preemptions = 0

    def add(self, request: Request) -> None:
        self.waiting.append(request)

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.max_num_batched_tokens
        i = 0
        while i < len(self.running) and budget > 0:
            req = self.running[i]
            n = min(req.num_tokens - req.num_computed_tokens, budget)
            while not self._reserve(req, n):
                victim = self.running.pop()  # the most recently admitted
                self._preempt(victim)
                out.preempted.append(victim)
                if victim is req:
                    break
            else:
                out.scheduled.append(ScheduledRequest(req, n, req.num_computed_tokens))
                budget -= n
                i += 1
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs and not out.preempted:
            req = self.waiting[0]
            matched = self._match_prefix(req)
            n = min(req.num_tokens - req.num_computed_tokens, budget)
            if not self._reserve(req, n):
                self.pool.release(matched)  # undo the match; try again next step
                req.block_ids, req.num_computed_tokens = [], 0
                break
            if not req.admitted_before:  # statistics count first admissions, not recomputation
                req.admitted_before = True
                req.num_cached_tokens = req.num_computed_tokens
                self.pool.count_query(req.num_tokens, req.num_computed_tokens)
            self.waiting.popleft()
            req.status = Status.RUNNING
            self.running.append(req)
            out.scheduled.append(ScheduledRequest(req, n, req.num_computed_tokens))
            budget -= n
        return out

    def _match_prefix(self, req: Request) -> list[int]:
        """Reuse cached blocks for the request's leading full blocks. At least the last token is
        always computed, since its logits are what the request samples from."""
        bs = self.pool.block_size
        full = (req.num_tokens - 1) // bs
        hashes = self._hashes(req, full)
        matched = self.pool.match_prefix(hashes)
        req.block_ids = list(matched)
        req.num_computed_tokens = len(matched) * bs
        return matched

    def _hashes(self, req: Request, n_blocks: int) -> list[bytes]:
        """The chained hashes of the request's first n_blocks full blocks (cached on the request)."""
        bs = self.pool.block_size
        while len(req.block_hashes) < n_blocks:
            i = len(req.block_hashes)
            parent = req.block_hashes[-1] if req.block_hashes else ROOT_HASH
            req.block_hashes.append(block_hash(parent, req.all_token_ids[i * bs : (i + 1) * bs]))
        return req.block_hashes[:n_blocks]

    def _reserve(self, req: Request, n: int) -> bool:
        """Make sure blocks cover the request's first num_computed_tokens + n tokens."""
        need = -(-(req.num_computed_tokens + n) // self.pool.block_size) - len(req.block_ids)
        if need <= 0:
            return True
        blocks = self.pool.allocate(need)
        if blocks is None:
            return False
        req.block_ids += blocks
        return True

    def _preempt(self, req: Request) -> None:
        self.pool.release(req.block_ids)
        req.block_ids, req.num_computed_tokens = [], 0
        req.status = Status.WAITING
        self.waiting.appendleft(req)
        self.num_preemptions += 1

    def after_step(self, out: SchedulerOutput) -> None:
        """Advance computed counts and enter newly filled blocks into the prefix cache."""
        bs = self.pool.block_size
        for s in out.scheduled:
            req = s.request
            req.num_computed_tokens += s.num_new_tokens
            full = req.num_computed_tokens // bs
            first_new = s.start // bs
            for i, h in enumerate(self._hashes(req, full)[first_new:], start=first_new):
                self.pool.cache_block(req.block_ids[i], h)

    def finish(self, req: Request) -> None:
        """Remove a finished or aborted request and free its blocks."""
        if req.status is Status.RUNNING:
            self.running.remove(req)
        elif req.status is Status.WAITING and req in self.waiting:
            self.waiting.remove(req)
        self.pool.release(req.block_ids)
        req.block_ids = []
        req.status = Status.FINISHED

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)
