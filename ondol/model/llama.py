"""The Llama-family decoder: RMSNorm, RoPE, grouped-query attention, SwiGLU MLP.

One ``forward(tokens, positions, cache)`` serves prefill (T prompt tokens) and decode (T = 1). The
cache is the attention backend for its memory layout: ``prepare(positions)`` once per forward,
``attention(layer, q, k, v)`` in each layer (stores k/v, attends over everything the queries see).
Module attribute names equal Hugging Face checkpoint tensor names (``model.layers.0.self_attn.q_proj
.weight``), so loading a checkpoint is assigning tensors by name; see ``loaders``.
Llama 2/3.x, Solar, Mistral and Qwen2 differ only in what ModelConfig says (biases, tied
embeddings, rope scaling, head_dim, sliding window).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ondol.config import ModelConfig
from ondol.model.rope import apply_rope, cos_sin, inv_frequencies


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 and scale after casting back, exactly as the reference does: in bf16
        # the order of the cast changes the result.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.n_heads, self.n_kv, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        h = cfg.hidden_size
        self.q_proj = nn.Linear(h, self.n_heads * self.head_dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(h, self.n_kv * self.head_dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, h, bias=cfg.o_bias)

    def forward(self, x, cos, sin, cache):
        b, t, _ = x.shape
        # [B, T, H*D] -> [B, H, T, D]
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = cache.attention(self.layer, q, k, v)  # stores k, v; returns [B, H, T, D]
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.n_heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        h, i = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = nn.Linear(h, i, bias=cfg.mlp_bias)
        self.up_proj = nn.Linear(h, i, bias=cfg.mlp_bias)
        self.down_proj = nn.Linear(i, h, bias=cfg.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.self_attn = Attention(cfg, layer)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, cache):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        # An explicit (empty) weight skips nn.Embedding's random init: on the meta device that init
        # imports ~70 MB of Python meta kernels, a fixed cost a small device should not pay.
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size,
                                         _weight=torch.empty(cfg.vocab_size, cfg.hidden_size))
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    """Build on the meta device and let a loader assign the weights (no random init is wasted)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.model = LlamaModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        # Not a parameter: a checkpoint never holds it, and it must stay float32 whatever the dtype.
        self.inv_freq = inv_frequencies(cfg.rope, cfg.head_dim)
        self.fused = None  # a FusedDecode (fused.py) the loader sets when this model's kernels allow it

    @property
    def dtype(self) -> torch.dtype:
        return self.model.norm.weight.dtype  # the embeddings may be quantized

    def tie_weights(self) -> None:
        self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, cache, select: torch.Tensor | None = None) -> torch.Tensor:
        """tokens, positions: int64 [B, T]. Returns float32 logits [B, T, V], or [B, len(select), V]
        for only the time steps in ``select`` (generation needs just the last one).

        Not under inference mode itself, so the trainer can backpropagate through it: callers that
        generate wrap their call in ``torch.inference_mode()`` (ModelRunner.execute does)."""
        x = self.model.embed_tokens(tokens)
        cos, sin = cos_sin(self.inv_freq, positions, x.dtype)  # [B, 1, T, D], shared by every layer
        cache.prepare(positions)  # once per forward: masks, gather indices
        if self.fused is not None and self.fused.applies(cache, tokens.shape[1]):
            x = self.fused(x, cos, sin, cache)  # all layers in one compiled call
        else:
            for layer in self.model.layers:
                x = layer(x, cos, sin, cache)
        if select is not None:
            x = x[:, select]
        return self.lm_head(self.model.norm(x)).float()
