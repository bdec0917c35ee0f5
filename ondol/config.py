"""ModelConfig: the one description of a decoder that every other part of ondol reads.

It is frozen and built only from the checkpoint's own metadata: ``config.json`` for a Hugging Face
folder (``from_hf``) or GGUF key/values (``loaders.gguf``). Nothing downstream looks at the raw
dictionaries again, so every spelling a published checkpoint uses (``rope_scaling`` + ``rope_theta``
in older files, ``rope_parameters`` in files newer ``transformers`` writes, ``eos_token_id`` as an
int or a list) is normalised here, once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ondol.errors import UnsupportedModelError

# architectures -> ondol's family name. All are the same decoder: RMSNorm, RoPE, grouped-query
# attention and a SwiGLU MLP; they differ only in which linear layers carry a bias and in the
# attention window, both of which ModelConfig records.
ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
}
ROPE_TYPES = ("default", "linear", "llama3")


@dataclass(frozen=True)
class RopeConfig:
    theta: float = 10000.0
    type: str = "default"
    factor: float = 1.0
    # llama3
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int | None = None


@dataclass(frozen=True)
class ModelConfig:
    architecture: str  # "llama" | "mistral" | "qwen2"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    max_position_embeddings: int
    rope: RopeConfig = RopeConfig()
    tie_word_embeddings: bool = False
    qkv_bias: bool = False  # Qwen2, and Llama with attention_bias
    o_bias: bool = False  # Llama with attention_bias only
    mlp_bias: bool = False
    sliding_window: int | None = None  # Mistral v0.1: keys further back than this are not seen
    torch_dtype: str | None = None  # the dtype the checkpoint was saved in, e.g. "bfloat16"

    def __post_init__(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise UnsupportedModelError(
                f"num_attention_heads ({self.num_attention_heads}) is not a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})."
            )
        if self.rope.type not in ROPE_TYPES:
            raise UnsupportedModelError(
                f"rope type {self.rope.type!r} is not supported; ondol supports {', '.join(ROPE_TYPES)}."
            )

    @property
    def num_parameters(self) -> int:
        """Parameter count from shapes alone (no weights needed), tied embeddings counted once."""
        h, i, hd = self.hidden_size, self.intermediate_size, self.head_dim
        q, kv = self.num_attention_heads * hd, self.num_key_value_heads * hd
        attn = h * q + 2 * h * kv + q * h
        attn += (q + 2 * kv) * self.qkv_bias + h * self.o_bias
        mlp = 3 * h * i + (2 * i + h) * self.mlp_bias
        layer = attn + mlp + 2 * h
        emb = self.vocab_size * h
        return emb * (1 if self.tie_word_embeddings else 2) + self.num_hidden_layers * layer + h

    def kv_bytes_per_token(self, element_size: int) -> int:
        return 2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * element_size

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> ModelConfig:
        """Build from a ``config.json`` dictionary; unsupported models fail with a clear message."""
        archs = cfg.get("architectures") or []
        known = [a for a in archs if a in ARCHITECTURES]
        if not known:
            name = archs[0] if archs else cfg.get("model_type", "<none given>")
            raise UnsupportedModelError(
                f"architecture {name!r} is not supported; ondol runs {', '.join(ARCHITECTURES)}."
            )
        family = ARCHITECTURES[known[0]]
        act = cfg.get("hidden_act", "silu")
        if act != "silu":
            raise UnsupportedModelError(f"hidden_act {act!r} is not supported; Llama-family models use 'silu'.")
        try:
            heads = int(cfg["num_attention_heads"])
            hidden = int(cfg["hidden_size"])
            attention_bias = bool(cfg.get("attention_bias", False))
            sliding = cfg.get("sliding_window")
            if family == "qwen2" and not cfg.get("use_sliding_window", False):
                sliding = None  # Qwen2 configs carry a window size but leave it switched off
            return cls(
                architecture=family,
                vocab_size=int(cfg["vocab_size"]),
                hidden_size=hidden,
                intermediate_size=int(cfg["intermediate_size"]),
                num_hidden_layers=int(cfg["num_hidden_layers"]),
                num_attention_heads=heads,
                num_key_value_heads=int(cfg.get("num_key_value_heads") or heads),
                head_dim=int(cfg.get("head_dim") or hidden // heads),
                rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
                max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
                rope=rope_from_hf(cfg),
                tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                qkv_bias=attention_bias or family == "qwen2",
                o_bias=attention_bias and family == "llama",
                mlp_bias=bool(cfg.get("mlp_bias", False)),
                sliding_window=int(sliding) if sliding else None,
                torch_dtype=cfg.get("torch_dtype") or cfg.get("dtype"),
            )
        except KeyError as e:
            raise UnsupportedModelError(f"config.json lacks the required field {e.args[0]!r}.") from None
        except (TypeError, ValueError) as e:
            raise UnsupportedModelError(f"config.json has a field of the wrong type: {e}.") from None

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


def rope_from_hf(cfg: dict[str, Any]) -> RopeConfig:
    """RoPE settings from either spelling: ``rope_parameters`` (newer) or ``rope_scaling``+``rope_theta``."""
    params = dict(cfg.get("rope_parameters") or {})
    scaling = cfg.get("rope_scaling") or {}
    params = {**scaling, **params}
    theta = params.get("rope_theta", cfg.get("rope_theta", 10000.0))
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        raise UnsupportedModelError(
            f"rope type {rope_type!r} is not supported; ondol supports {', '.join(ROPE_TYPES)}."
        )
    orig = params.get("original_max_position_embeddings")
    return RopeConfig(
        theta=float(theta),
        type=rope_type,
        factor=float(params.get("factor", 1.0)),
        low_freq_factor=float(params.get("low_freq_factor", 1.0)),
        high_freq_factor=float(params.get("high_freq_factor", 4.0)),
        original_max_position_embeddings=int(orig) if orig else None,
    )
