"""Attention over a KV cache, and the masks it needs.

Shapes: q [B, H, T, D]; k, v [B, KV, S, D] with H a multiple of KV (grouped-query attention);
out [B, H, T, D]. A boolean mask [B, 1, T, S] is True where a query may see a key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_mask(q_positions: torch.Tensor, k_positions: torch.Tensor, window: int | None) -> torch.Tensor:
    """[B, 1, T, S] mask for queries at q_positions [B, T] over keys at k_positions [B, S].

    A key is visible when it is not in the future and, with a sliding window (Mistral), when it is
    fewer than ``window`` positions back. Keys at negative positions are empty cache slots.
    """
    q = q_positions[:, :, None]
    k = k_positions[:, None, :]
    mask = (k <= q) & (k >= 0)
    if window is not None:
        mask &= k > q - window
    return mask[:, None]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=q.shape[1] != k.shape[1])


class CausalAttention:
    """The "cache" for training: no memory, each query sees its own sequence up to itself.

    Batches are right-padded, so plain causal attention is right for every real token (pads come
    after it and are never seen); pads attend to garbage, but the loss ignores them. A sliding
    window (Mistral) needs an explicit mask once the sequence is longer than the window.
    """

    def __init__(self, window: int | None = None) -> None:
        self.window = window
        self.mask: torch.Tensor | None = None

    def prepare(self, positions: torch.Tensor) -> None:
        # positions [B, T] -> mask [B, 1, T, T], only when the window actually cuts something off
        windowed = self.window is not None and positions.shape[1] > self.window
        self.mask = causal_mask(positions, positions, self.window) if windowed else None

    def attention(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        gqa = q.shape[1] != k.shape[1]
        if self.mask is not None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask, enable_gqa=gqa)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
