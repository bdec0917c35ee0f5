"""Rotary position embeddings.

Frequencies are computed once per model; cos/sin are computed per forward call for just the
positions in the batch (a [B, T, head_dim] table), so a 128k-context model carries no 128k table.
The rotation is the "rotate half" form Hugging Face checkpoints are laid out for; GGUF files store
q/k rows permuted for llama.cpp's interleaved form, and the GGUF loader undoes that permutation.
"""

from __future__ import annotations

import math

import torch

from ondol.config import RopeConfig


def inv_frequencies(rope: RopeConfig, head_dim: int) -> torch.Tensor:
    """[head_dim // 2] float32 inverse frequencies, with the checkpoint's scaling applied."""
    inv = 1.0 / (rope.theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device="cpu").float() / head_dim))
    if rope.type == "linear":
        return inv / rope.factor
    if rope.type == "llama3":
        return _llama3_scaling(inv, rope)
    return inv


def _llama3_scaling(inv: torch.Tensor, rope: RopeConfig) -> torch.Tensor:
    # Llama 3.1: long wavelengths are divided by `factor`, short ones kept, and the band between
    # is interpolated smoothly, so local detail survives while the context grows 8x.
    old_ctx = rope.original_max_position_embeddings or 8192
    low_wavelen = old_ctx / rope.low_freq_factor
    high_wavelen = old_ctx / rope.high_freq_factor
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > low_wavelen, inv / rope.factor, inv)
    smooth = (old_ctx / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor)
    smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


def cos_sin(inv_freq: torch.Tensor, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each [B, 1, T, head_dim] (broadcast over heads), for int64 positions [B, T];
    computed in float32 as the reference does, then cast."""
    freqs = positions.to(torch.float32)[:, None, :, None] * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, heads, T, head_dim] rotated by cos/sin [B, 1, T, head_dim]."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
