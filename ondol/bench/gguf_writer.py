"""Convert a small Hugging Face Llama/Mistral/Qwen2 folder to GGUF the way llama.cpp does.

A stand-in for llama.cpp's ``convert_hf_to_gguf.py`` (``LlamaModel`` / ``Qwen2Model``), used by the
tests and by ``ondol bench`` (which then quantizes with llama.cpp's own quantizer),
written with gguf-py's ``GGUFWriter`` and its own name map (``gguf.get_tensor_name_map``), not with
ondol's table, so the tests check ondol against llama.cpp's naming rather than against itself:

* metadata: what ``TextModel.set_gguf_parameters`` and ``LlamaModel.set_gguf_parameters`` write
  (Mistral is written as architecture "llama", as llama.cpp does, and its sliding window is dropped);
* q/k rows of Llama/Mistral permuted with ``LlamaModel.permute`` (Qwen2 left alone);
* Llama 3.1 rope scaling written as ``rope_freqs.weight`` (``LlamaModel.generate_extra_tensors``);
* norms and 1-D tensors F32, 2-D weights in ``qtype``; tied embeddings -> no ``output.weight``;
* tokenizer: byte-level BPE as "gpt2" (``_set_vocab_gpt2``) and SentencePiece-style BPE with byte
  fallback as "llama" (``_set_vocab_llama_hf``), special ids / add_bos / merges / chat template
  via gguf-py's ``SpecialVocab``.

Two deliberate departures, both where the converter's output would not reproduce the HF model:
llama3 ``original_max_position_embeddings`` is read from the rope parameters (the converter reads a
top-level key that HF configs do not have and falls back to 8192), and "llama" vocabularies are
padded to the model's vocab size and given SentencePiece-like scores (minus the piece id) instead of
a constant -1000.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType as QType
from safetensors.torch import load_file
from tokenizers import Tokenizer

ARCHS = {
    "LlamaForCausalLM": gguf.MODEL_ARCH.LLAMA,
    "MistralForCausalLM": gguf.MODEL_ARCH.LLAMA,  # llama.cpp converts Mistral as llama
    "Qwen2ForCausalLM": gguf.MODEL_ARCH.QWEN2,
}
QTYPES = {
    "F32": (QType.F32, gguf.LlamaFileType.ALL_F32),
    "F16": (QType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "BF16": (QType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "Q8_0": (QType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "Q4_0": (QType.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
}
# Llama 3's split regex: llama.cpp calls that pre-tokenizer "llama-bpe".
LLAMA3_SPLIT_START = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"


def write_gguf(hf_folder: Path, out: Path, qtype: str = "F16", *, tokenizer_pre: str | None = None) -> Path:
    hf_folder, out = Path(hf_folder), Path(out)
    cfg = json.loads((hf_folder / "config.json").read_text())
    arch = ARCHS[cfg["architectures"][0]]
    writer = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name(hf_folder.name)
    writer.add_file_type(QTYPES[qtype][1])
    write_hparams(writer, cfg, arch)
    if (hf_folder / "tokenizer.json").exists():
        write_vocab(writer, hf_folder, cfg["vocab_size"], tokenizer_pre)
    for name, data, raw_type in converted_tensors(hf_folder, cfg, arch, QTYPES[qtype][0]):
        writer.add_tensor(name, data, raw_dtype=raw_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def rope_parameters(cfg: dict[str, Any]) -> dict[str, Any]:
    """``rope_parameters`` (transformers >= 5) or ``rope_scaling`` + ``rope_theta`` (older files)."""
    params = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    params.setdefault("rope_theta", cfg.get("rope_theta", 10000.0))
    params.setdefault("rope_type", params.get("type", "default"))
    return params


def write_hparams(w: gguf.GGUFWriter, cfg: dict[str, Any], arch: gguf.MODEL_ARCH) -> None:
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg.get("num_key_value_heads") or cfg["num_attention_heads"])
    rope = rope_parameters(cfg)
    if rope["rope_type"] == "linear" and "factor" in rope:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope["factor"])
    w.add_rope_freq_base(rope["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    if cfg.get("head_dim") is not None:
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
    if arch == gguf.MODEL_ARCH.LLAMA:
        w.add_vocab_size(cfg["vocab_size"])
        w.add_rope_dimension_count(cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"])


# --- tensors ---------------------------------------------------------------------------------


def permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """convert_hf_to_gguf's ``LlamaModel.permute``: rows of each head from halves to pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_freqs(cfg: dict[str, Any]) -> torch.Tensor | None:
    """``LlamaModel.generate_extra_tensors``: per-frequency divisors [head_dim / 2], float32."""
    rope = rope_parameters(cfg)
    if rope["rope_type"].lower() != "llama3":
        return None
    dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    freqs = 1.0 / (rope["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old = rope.get("original_max_position_embeddings") or cfg.get("original_max_position_embeddings", 8192)
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            factors.append(1)
        elif wavelen > old / low:
            factors.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(factors, dtype=torch.float32)


def encode(gguf_name: str, data: np.ndarray, qtype: QType) -> tuple[np.ndarray, QType]:
    """(array, type) as the converter stores it: norms and 1-D tensors F32, the rest in qtype
    (F16 where a row does not split into the type's blocks)."""
    if data.ndim <= 1 or gguf_name.endswith("_norm.weight") or qtype == QType.F32:
        return data.astype(np.float32), QType.F32
    try:
        return gguf.quants.quantize(data, qtype), qtype
    except gguf.quants.QuantError:
        return data.astype(np.float16), QType.F16


def converted_tensors(folder: Path, cfg: dict[str, Any], arch: gguf.MODEL_ARCH, qtype: QType) -> Iterator[tuple[str, np.ndarray, QType]]:
    names = gguf.get_tensor_name_map(arch, cfg["num_hidden_layers"])
    n_head = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads") or n_head
    state: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        state.update(load_file(f))
    for name, w in state.items():
        if name.endswith("rotary_emb.inv_freq") or (name == "lm_head.weight" and cfg.get("tie_word_embeddings")):
            continue
        if arch == gguf.MODEL_ARCH.LLAMA and name.endswith(("q_proj.weight", "q_proj.bias")):
            w = permute(w, n_head)
        if arch == gguf.MODEL_ARCH.LLAMA and name.endswith(("k_proj.weight", "k_proj.bias")):
            w = permute(w, n_kv)
        new_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise ValueError(f"cannot map tensor {name!r}")
        yield (new_name, *encode(new_name, w.float().numpy(), qtype))
    if arch == gguf.MODEL_ARCH.LLAMA and (freqs := llama3_rope_freqs(cfg)) is not None:
        yield gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", freqs.numpy(), QType.F32


# --- tokenizer -------------------------------------------------------------------------------


def write_vocab(w: gguf.GGUFWriter, folder: Path, vocab_size: int, pre: str | None) -> None:
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    kind = "llama" if spec["model"]["type"] == "BPE" and spec["model"].get("byte_fallback") else "gpt2"
    tokens, scores, types = vocab_lists(Tokenizer.from_file(str(folder / "tokenizer.json")), kind, vocab_size)
    w.add_tokenizer_model(kind)
    w.add_tokenizer_pre(pre or ("default" if kind == "llama" else guess_pre(spec)))
    w.add_token_list(tokens)
    if kind == "llama":
        w.add_token_scores(scores)
    w.add_token_types(types)
    gguf.SpecialVocab(folder, load_merges=kind == "gpt2", n_vocab=len(tokens)).add_to_gguf(w, quiet=True)


def vocab_lists(tok: Tokenizer, kind: str, vocab_size: int) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types by id, padded to the model's vocab size with [PADi] UNUSED."""
    vocab = {i: t for t, i in tok.get_vocab(with_added_tokens=True).items()}
    added = tok.get_added_tokens_decoder()
    unk = json.loads(tok.to_str())["model"].get("unk_token")
    tokens, scores, types = [], [], []
    for i in range(max(vocab_size, len(vocab))):
        token = vocab.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            scores.append(-1000.0)
            types.append(gguf.TokenType.UNUSED)
            continue
        if token == unk:
            ttype = gguf.TokenType.UNKNOWN
        elif i in added:
            special = added[i].special or token.startswith("<|") and token.endswith("|>")
            ttype = gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED
        elif kind == "llama" and re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", token):
            ttype = gguf.TokenType.BYTE
        else:
            ttype = gguf.TokenType.NORMAL
        tokens.append(token)
        # SentencePiece BPE scores fall with merge order; pieces are laid out in that order.
        scores.append(-float(i) if ttype == gguf.TokenType.NORMAL else 0.0)
        types.append(int(ttype))
    return tokens, scores, types


def guess_pre(spec: dict[str, Any]) -> str:
    """llama.cpp's name for the pre-tokenizer (the converter hashes encodings; this reads the regex)."""
    pre = spec.get("pre_tokenizer") or {}
    for p in pre.get("pretokenizers", [pre]):
        if p.get("type") == "Split" and p.get("pattern", {}).get("Regex", "").startswith(LLAMA3_SPLIT_START):
            return "llama-bpe"
    return "gpt-2"
