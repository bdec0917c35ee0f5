"""The models ``ondol bench`` measures: random weights in a real model's shape, written once as a
Hugging Face folder (bf16 safetensors) and as GGUF (F16 by ondol's converter, then Q8_0 and Q4_0 by
llama.cpp's own quantizer through llama-cpp-python), and reused from the cache after that.

Random weights run exactly as fast as trained ones; only the shape matters for speed. The
tokenizer is ondol's embedded model's (4,096 tokens, the model's vocabulary padded past it): the
benchmark feeds token ids, so what the tokens spell does not matter.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from ondol.errors import OndolError
from ondol.home.assistant import EMBEDDED_MODEL


@dataclass(frozen=True)
class Shape:
    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int

    def config(self) -> dict:
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16",
            "hidden_size": self.hidden, "intermediate_size": self.intermediate, "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads, "num_key_value_heads": self.kv_heads,
            "head_dim": self.hidden // self.heads, "vocab_size": self.vocab, "max_position_embeddings": 131072,
            "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": True, "hidden_act": "silu",
            "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192},
            "attention_bias": False, "mlp_bias": False, "eos_token_id": 3,  # <|end|> of the tokenizer
        }

    def parameters(self) -> int:
        from ondol.config import ModelConfig

        return ModelConfig.from_hf(self.config()).num_parameters


SHAPES = {
    # Llama-3.2-1B: 1.24 B parameters, tied embeddings (the head is the 128k x 2048 table)
    "llama-3.2-1b": Shape("llama-3.2-1b", 2048, 8192, 16, 32, 8, 128256),
    # --quick: the same structure, small enough that every system loads and runs in seconds
    "quick": Shape("quick", 512, 1536, 4, 8, 4, 16384),
}
GGUF_TYPES = ("F16", "Q8_0", "Q4_0")


def build(shape: Shape, root: Path, log=print, gguf: bool = True) -> dict[str, Path]:
    """{"hf": folder, "F16"/"Q8_0"/"Q4_0": .gguf file}, built under root/shape.name unless there
    (the GGUF files only with ``gguf``)."""
    base = root / shape.name
    hf = base / "hf"
    if not (hf / "model.safetensors").exists():
        log(f"writing a random-weight {shape.name} model ({shape.parameters() / 1e9:.2f} B parameters) to {hf}")
        _write_hf(shape, hf)
    paths: dict[str, Path] = {"hf": hf}
    if not gguf:
        return paths
    f16 = base / f"{shape.name}-F16.gguf"
    if not f16.exists():
        from ondol.bench.gguf_writer import write_gguf

        log(f"converting to {f16.name}")
        write_gguf(hf, f16.with_suffix(".partial"), "F16").rename(f16)
    paths["F16"] = f16
    for qtype in GGUF_TYPES[1:]:
        out = base / f"{shape.name}-{qtype}.gguf"
        if not out.exists():
            log(f"quantizing to {out.name} with llama.cpp")
            llama_cpp_quantize(f16, out, qtype)
        paths[qtype] = out
    return paths


def _write_hf(shape: Shape, folder: Path) -> None:
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    d = shape.hidden // shape.heads

    def matrix(n: int, k: int) -> torch.Tensor:
        return (torch.randn(n, k, generator=g) * 0.02).to(torch.bfloat16)

    def norm() -> torch.Tensor:
        return (1 + 0.1 * torch.randn(shape.hidden, generator=g)).to(torch.bfloat16)

    tensors = {"model.embed_tokens.weight": matrix(shape.vocab, shape.hidden), "model.norm.weight": norm()}
    for i in range(shape.layers):
        p = f"model.layers.{i}."
        tensors |= {
            p + "self_attn.q_proj.weight": matrix(shape.heads * d, shape.hidden),
            p + "self_attn.k_proj.weight": matrix(shape.kv_heads * d, shape.hidden),
            p + "self_attn.v_proj.weight": matrix(shape.kv_heads * d, shape.hidden),
            p + "self_attn.o_proj.weight": matrix(shape.hidden, shape.heads * d),
            p + "mlp.gate_proj.weight": matrix(shape.intermediate, shape.hidden),
            p + "mlp.up_proj.weight": matrix(shape.intermediate, shape.hidden),
            p + "mlp.down_proj.weight": matrix(shape.hidden, shape.intermediate),
            p + "input_layernorm.weight": norm(), p + "post_attention_layernorm.weight": norm(),
        }
    save_file(tensors, tmp / "model.safetensors", {"format": "pt"})
    (tmp / "config.json").write_text(json.dumps(shape.config(), indent=2))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(EMBEDDED_MODEL / name, tmp / name)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def llama_cpp_quantize(src: Path, out: Path, qtype: str) -> None:
    try:
        import llama_cpp
    except ImportError:
        raise OndolError("llama-cpp-python is not installed (pip install 'ondol[bench]'; it builds llama.cpp from "
                         "source, several minutes)") from None
    import ctypes

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "Q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0}[qtype]
    partial = out.with_suffix(".partial")
    log = out.with_suffix(".quantize.log")
    with quiet_fds(log):  # llama.cpp prints a line per tensor from C; keep it in a file
        status = llama_cpp.llama_model_quantize(str(src).encode(), str(partial).encode(), ctypes.byref(params))
    if status != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise OndolError(f"llama.cpp could not quantize {src.name} to {qtype}: {' / '.join(tail)}")
    partial.rename(out)


@contextlib.contextmanager
def quiet_fds(path: Path):
    """Send this process's stdout and stderr file descriptors (C code's output too) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "wb") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
