"""KV caches. A cache is the model's attention backend for one memory layout:
``prepare(positions)`` once per forward, then ``attention(layer, q, k, v)`` in every layer, which
stores the new keys/values and attends over everything each query may see.

* ``ContiguousKVCache``: [layers, B, KV, capacity, D] for B sequences advancing in step. It is the
  plain reference the paged cache is tested against, and what parity tests and benchmarks use.
* ``PagedKVCache``: one pool of fixed-size blocks shared by all requests; a request's keys live in
  the blocks of its block table. ``PagedKVCache.step(...)`` returns the per-forward object the
  model is called with (``PagedStep``), holding the slot of every new token and which cached slots
  each query attends to.

Shapes: q [B, H, T, D]; k, v [B, KV, T, D]; out [B, H, T, D].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from ondol.config import ModelConfig
from ondol.model.attention import attend, causal_mask


class ContiguousKVCache:
    """Starts with the capacity asked for and doubles, up to ``max_len``, when a forward needs more."""

    def __init__(self, config: ModelConfig, max_len: int, dtype: torch.dtype, batch: int = 1,
                 capacity: int | None = None) -> None:
        capacity = min(capacity or max_len, max_len)
        shape = (config.num_hidden_layers, batch, config.num_key_value_heads, capacity, config.head_dim)
        self.k = torch.zeros(shape, dtype=dtype)
        self.v = torch.zeros(shape, dtype=dtype)
        self.max_len = max_len
        self.window = config.sliding_window
        self._positions: torch.Tensor | None = None  # [T] positions written by the current forward
        self._end = 0  # keys [0, _end) are valid after the current forward's writes
        self._mask: torch.Tensor | None = None

    def prepare(self, positions: torch.Tensor) -> None:
        """positions [B, T], rows equal (the sequences advance in step)."""
        pos = positions[0]
        end = int(pos[-1]) + 1
        if end > self.max_len:
            raise ValueError(f"position {end - 1} is past the cache's {self.max_len} slots")
        if end > self.k.shape[3]:
            self._grow(min(max(end, 2 * self.k.shape[3]), self.max_len))
        self._positions, self._end = pos, end
        if positions.shape[1] == 1 and (self.window is None or end <= self.window):
            self._mask = None  # one query that sees every cached key: no mask needed
        else:
            keys = torch.arange(end).expand(positions.shape[0], end)
            self._mask = causal_mask(positions, keys, self.window)

    def _grow(self, capacity: int) -> None:
        old = self.k.shape[3]
        for name in ("k", "v"):
            t = getattr(self, name)
            grown = t.new_zeros(*t.shape[:3], capacity, t.shape[4])
            grown[:, :, :, :old] = t
            setattr(self, name, grown)

    def attention(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        self.k[layer].index_copy_(2, self._positions, k)
        self.v[layer].index_copy_(2, self._positions, v)
        keys, values = self.k[layer, :, :, : self._end], self.v[layer, :, :, : self._end]
        return attend(q, keys, values, self._mask)


class PagedKVCache:
    """The block pool's memory: keys and values of every slot, [layers, num_blocks * block_size, KV, D]."""

    def __init__(self, config: ModelConfig, num_blocks: int, block_size: int, dtype: torch.dtype) -> None:
        shape = (config.num_hidden_layers, num_blocks * block_size, config.num_key_value_heads, config.head_dim)
        # empty, not zeros: zeros writes every page (1 GiB resident and half a second at start-up);
        # empty leaves blocks unmapped until used. Attention never reads a slot that was not
        # written (PagedStep pads with written slots), so the uninitialised memory is never seen.
        self.k = torch.empty(shape, dtype=dtype)
        self.v = torch.empty(shape, dtype=dtype)
        self.num_blocks, self.block_size = num_blocks, block_size
        self.window = config.sliding_window

    @staticmethod
    def bytes_per_block(config: ModelConfig, block_size: int, dtype: torch.dtype) -> int:
        return block_size * config.kv_bytes_per_token(dtype.itemsize)

    def slots(self, block_ids: list[int], start: int, end: int) -> torch.Tensor:
        """Slot indices [end - start] of token positions start..end-1 of a request with these blocks."""
        pos = torch.arange(start, end)
        table = torch.tensor(block_ids, dtype=torch.int64)
        return table[pos // self.block_size] * self.block_size + pos % self.block_size

    def step(self, seqs: list[SeqSpan]) -> PagedStep:
        return PagedStep(self, seqs)


@dataclass
class SeqSpan:
    """One request's part of a step: its new tokens are positions start..start+length-1, written
    at the rows row..row+length-1 of the flattened batch; it attends over positions 0..end-1."""

    block_ids: list[int]
    start: int
    length: int
    row: int

    @property
    def end(self) -> int:
        return self.start + self.length


class PagedStep:
    """Attention for one flattened step (B = 1, T = every scheduled token of every request).

    Single-token spans (decoding requests) are attended together: their cached keys are gathered
    into a padded [n, KV, S_max, D] batch with padding masked out. Multi-token spans (prompt
    chunks) are attended one by one with a causal mask over their own keys.
    """

    def __init__(self, cache: PagedKVCache, seqs: list[SeqSpan]) -> None:
        self.cache = cache
        self.write_slots = torch.cat([cache.slots(s.block_ids, s.start, s.end) for s in seqs])  # [T]
        decode = [s for s in seqs if s.length == 1]
        self.chunks = [(s, cache.slots(s.block_ids, 0, s.end)) for s in seqs if s.length > 1]
        self.decode_rows = torch.tensor([s.row for s in decode], dtype=torch.int64)
        self.decode_slots = self.decode_lengths = None
        # Only single-token spans, each seeing all its keys: what the fused decode step (model/fused.py) runs.
        self.decode_only = not self.chunks and all(cache.window is None or s.end <= cache.window for s in decode)
        if decode:
            s_max = max(s.end for s in decode)
            slots = torch.empty(len(decode), s_max, dtype=torch.int64)
            for i, s in enumerate(decode):
                own = cache.slots(s.block_ids, 0, s.end)
                # Padding repeats the request's first slot: masked out, but it must hold finite
                # numbers, since 0 * NaN from never-written memory would still poison the sum.
                slots[i] = own[0]
                slots[i, : s.end] = own
            self.decode_slots = slots
            self.decode_lengths = torch.tensor([s.end for s in decode], dtype=torch.int64)
        self._chunk_masks = [
            causal_mask(torch.arange(s.start, s.end)[None], torch.arange(s.end)[None], cache.window)
            for s, _ in self.chunks
        ]

    @cached_property
    def decode_mask(self) -> torch.Tensor:
        """[n, 1, 1, S_max] for the decoding rows: each query (at position length - 1) sees its own
        keys 0..length-1, not the padding. Only the Python layers need it; the fused step uses the
        lengths, so it is built on first use."""
        keys = torch.arange(self.decode_slots.shape[1])[None]
        key_pos = torch.where(keys < self.decode_lengths[:, None], keys, -1)  # -1: padding, masked
        return causal_mask((self.decode_lengths - 1)[:, None], key_pos, self.cache.window)

    def prepare(self, positions: torch.Tensor) -> None:
        pass  # everything was derived from the spans in __init__

    def attention(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        kp, vp = self.cache.k[layer], self.cache.v[layer]  # [slots, KV, D]
        # [1, KV, T, D] -> [T, KV, D] rows written at their slots
        kp.index_copy_(0, self.write_slots, k[0].transpose(0, 1))
        vp.index_copy_(0, self.write_slots, v[0].transpose(0, 1))
        out = torch.empty_like(q)
        if self.decode_slots is not None:
            n, s_max = self.decode_slots.shape
            flat = self.decode_slots.flatten()
            keys = kp.index_select(0, flat).view(n, s_max, *kp.shape[1:]).transpose(1, 2)  # [n, KV, S, D]
            values = vp.index_select(0, flat).view(n, s_max, *vp.shape[1:]).transpose(1, 2)
            qd = q[0, :, self.decode_rows].transpose(0, 1)[:, :, None]  # [n, H, 1, D]
            out[0, :, self.decode_rows] = attend(qd, keys, values, self.decode_mask)[:, :, 0].transpose(0, 1)
        for (span, slots), mask in zip(self.chunks, self._chunk_masks):
            keys = kp.index_select(0, slots).transpose(0, 1)[None]  # [1, KV, S, D]
            values = vp.index_select(0, slots).transpose(0, 1)[None]
            rows = slice(span.row, span.row + span.length)
            out[:, :, rows] = attend(q[:, :, rows], keys, values, mask)
        return out
