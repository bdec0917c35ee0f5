"""Tensor names: llama.cpp's GGUF names <-> Hugging Face names, as data.

ondol's modules are named like Hugging Face checkpoints (``model.layers.0.self_attn.q_proj.weight``),
so a GGUF tensor is loaded by translating its name and nothing else. The table covers the Llama
family (Llama, Mistral, Qwen2): every tensor is a ``.weight`` or a ``.bias`` of the same module, so
the suffix is carried over unchanged.
"""

from __future__ import annotations

import re

SUFFIXES = ("weight", "bias")

# GGUF base name -> HF module path, for tensors outside the decoder blocks.
GLOBAL = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}

# GGUF "blk.N.<name>" -> HF "model.layers.N.<path>".
LAYER = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",  # .bias too for Qwen2 (and Llama with attention_bias)
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}

# GGUF tensors with no HF counterpart: llama.cpp stores Llama 3.1-style rope scaling as per-frequency
# divisors in ``rope_freqs.weight``; HF keeps it in config.json, and the GGUF loader folds it back
# into ModelConfig.rope.
NO_HF_COUNTERPART = ("rope_freqs.weight",)

_BLOCK = re.compile(r"blk\.(\d+)\.(\w+)")
_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)")
_HF_GLOBAL = {hf: gg for gg, hf in GLOBAL.items()}
_HF_LAYER = {hf: gg for gg, hf in LAYER.items()}


def gguf_to_hf(name: str) -> str | None:
    """``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``; None for a name the
    table does not know (including ``rope_freqs.weight``, which has no HF tensor)."""
    base, _, suffix = name.rpartition(".")
    if suffix not in SUFFIXES:
        return None
    if base in GLOBAL:
        return f"{GLOBAL[base]}.{suffix}"
    m = _BLOCK.fullmatch(base)
    if m and m[2] in LAYER:
        return f"model.layers.{m[1]}.{LAYER[m[2]]}.{suffix}"
    return None


def hf_to_gguf(name: str) -> str:
    """``model.layers.3.self_attn.q_proj.weight`` -> ``blk.3.attn_q.weight``; KeyError if unknown."""
    base, _, suffix = name.rpartition(".")
    if suffix in SUFFIXES:
        if base in _HF_GLOBAL:
            return f"{_HF_GLOBAL[base]}.{suffix}"
        m = _LAYER.fullmatch(base)
        if m and m[2] in _HF_LAYER:
            return f"blk.{m[1]}.{_HF_LAYER[m[2]]}.{suffix}"
    raise KeyError(f"{name!r} has no GGUF name in the Llama-family table")
