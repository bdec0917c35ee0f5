"""Tiny random-weight checkpoints written by ``transformers`` itself, in the shapes ondol must run.

Each is a real Hugging Face folder: config.json + model.safetensors from ``save_pretrained``, a
byte-level BPE tokenizer trained in-process (Llama 3 style, so Korean and emoji are byte tokens), a
Llama-3-style chat template and a generation_config.json with two end ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers

from ondol.demo import CHAT_TEMPLATE
from tests.tokenizer_fixtures import byte_level_bpe, save_hf_folder

LLAMA3_TEMPLATE = CHAT_TEMPLATE  # Llama-3-style headers and <|eot_id|>

BASE = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=256, rms_norm_eps=1e-5)

# name -> (config class, model class, config overrides)
SHAPES = {
    "llama2": (transformers.LlamaConfig, transformers.LlamaForCausalLM, dict(num_key_value_heads=4)),
    "llama3.2": (transformers.LlamaConfig, transformers.LlamaForCausalLM, dict(
        num_key_value_heads=2, head_dim=24, tie_word_embeddings=True, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 64})),
    "gqa": (transformers.LlamaConfig, transformers.LlamaForCausalLM, dict(num_attention_heads=8, num_key_value_heads=2,
                                                                         num_hidden_layers=3)),
    "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM, dict(num_key_value_heads=2,
                                                                                 sliding_window=24)),
    # Solar 10.7B is a LlamaForCausalLM made deep by depth up-scaling: 48 layers.
    "solar": (transformers.LlamaConfig, transformers.LlamaForCausalLM, dict(num_key_value_heads=2, hidden_size=32,
                                                                           num_hidden_layers=48, intermediate_size=64)),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM, dict(num_key_value_heads=2,
                                                                          tie_word_embeddings=True)),
}


def make_checkpoint(path: Path, shape: str = "llama3.2", seed: int = 0, dtype: torch.dtype = torch.float32):
    """Write a tiny checkpoint of ``shape`` into ``path``; returns the transformers model (eval mode)."""
    config_cls, model_cls, overrides = SHAPES[shape]
    tok = byte_level_bpe("llama3")
    vocab = tok.get_vocab_size(with_added_tokens=True)
    bos, eot, eos = (tok.token_to_id(t) for t in ("<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>"))
    config = config_cls(**{**BASE, **overrides}, vocab_size=vocab, bos_token_id=bos, eos_token_id=[eos, eot])
    torch.manual_seed(seed)
    model = model_cls(config).to(dtype).eval()
    # Random init is nearly uniform over the vocabulary; larger weights give peaked, varied logits
    # (a far stronger test of sampling and greedy parity).
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    model.generation_config.eos_token_id = [eos, eot]
    model.save_pretrained(path)
    save_hf_folder(tok, path, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", chat_template=LLAMA3_TEMPLATE)
    return model


def read_config(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())
