"""KV caches. The model calls ``cache.update(layer, k, v)`` in each layer and ``cache.mask(positions)``
once per forward; how the cache lays out memory is its own business.

``ContiguousKVCache`` holds [layers, B, KV, capacity, D] for B sequences that advance in step
(one prompt, or a batch of equal-length prompts); writes go to the given positions. It starts with
the capacity asked for and doubles, up to ``max_len``, when a forward needs more: a request that
may run to a 128k context does not reserve 128k slots up front.
"""

from __future__ import annotations

import torch

from ondol.config import ModelConfig
from ondol.model.attention import causal_mask


class ContiguousKVCache:
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

    def mask(self, positions: torch.Tensor) -> torch.Tensor | None:
        """Called once per forward with positions [B, T] (rows equal); returns the attention mask."""
        pos = positions[0]
        end = int(pos[-1]) + 1
        if end > self.max_len:
            raise ValueError(f"position {end - 1} is past the cache's {self.max_len} slots")
        if end > self.k.shape[3]:
            self._grow(min(max(end, 2 * self.k.shape[3]), self.max_len))
        self._positions, self._end = pos, end
        if positions.shape[1] == 1 and (self.window is None or end <= self.window):
            return None  # one query that sees every cached key: no mask needed
        keys = torch.arange(end).expand(positions.shape[0], end)
        return causal_mask(positions, keys, self.window)

    def _grow(self, capacity: int) -> None:
        old = self.k.shape[3]
        for name in ("k", "v"):
            t = getattr(self, name)
            grown = t.new_zeros(*t.shape[:3], capacity, t.shape[4])
            grown[:, :, :, :old] = t
            setattr(self, name, grown)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v [B, KV, T, D] at this forward's positions; return all valid keys/values."""
        self.k[layer].index_copy_(2, self._positions, k)
        self.v[layer].index_copy_(2, self._positions, v)
        return self.k[layer, :, :, : self._end], self.v[layer, :, :, : self._end]
