"""``ondol quantize``: a full-precision Hugging Face folder -> an ondol quantized folder.

The output is the same folder shape (config.json, tokenizer files, safetensors shards) with each
quantized weight stored as its parts (formats.py) and config.json's ``quantization_config``
saying how. Tensors are read, quantized and written one at a time; only the output is held in
memory until a shard is written.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from ondol.errors import OndolError
from ondol.loaders import _progress_bar, _quantized_modules, open_checkpoint
from ondol.model import LlamaForCausalLM
from ondol.quant.formats import QuantSpec, quantize

SHARD_BYTES = 2 << 30
WEIGHT_FILES = ("model.safetensors.index.json",)


@dataclass
class QuantizeReport:
    out: Path
    spec: QuantSpec
    tensors_quantized: int
    bytes_in: int
    bytes_out: int
    seconds: float


def quantize_folder(src: str | Path, out: str | Path, spec: QuantSpec, progress: bool = False) -> QuantizeReport:
    start = time.perf_counter()
    ckpt = open_checkpoint(src)
    out = Path(out)
    if ckpt.format != "safetensors":
        raise OndolError(f"{ckpt.path.name} is a GGUF file: ondol runs its Q8_0/Q4_0/Q4_K/Q6_K tensors as they "
                         "are; quantize a Hugging Face folder instead.")
    if ckpt.quantized:
        raise OndolError(f"{ckpt.path.name} is already quantized.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OndolError(f"{out} already exists and is not an empty folder; choose a new output path.")
    with torch.device("meta"):
        chosen = _quantized_modules(LlamaForCausalLM(ckpt.config), spec)
    tie = ckpt.config.tie_word_embeddings
    out.mkdir(parents=True, exist_ok=True)
    shard: dict[str, torch.Tensor] = {}
    shards: list[dict[str, torch.Tensor]] = []
    count, total = 0, sum(s.nbytes(n) for s in ckpt.sources for n in s.keys())
    try:
        with _progress_bar(progress, total, f"Quantizing {ckpt.path.name} to int{spec.bits}") as advance:
            for source in ckpt.sources:
                for name in source.keys():
                    module, _, leaf = name.rpartition(".")
                    w = source.tensor(name)
                    if tie and name == "lm_head.weight":
                        pass  # the embeddings are the head
                    elif module in chosen and leaf == "weight" and w.dim() == 2 and spec.group_for(w.shape[1]):
                        t = quantize(w, spec.bits, spec.group_for(w.shape[1]), spec.symmetric)
                        shard.update({f"{module}.{part}": v for part, v in
                                      (("qweight", t.qweight), ("scales", t.scales), ("zeros", t.zeros)) if v is not None})
                        count += 1
                    else:
                        shard[name] = w.clone()
                    source.release(name)
                    advance(source.nbytes(name))
                    if sum(v.nbytes for v in shard.values()) >= SHARD_BYTES:
                        shards.append(_write(out, shard, len(shards)))
                        shard = {}
        shards.append(_write(out, shard, len(shards)))
        _finish(ckpt.path, out, shards, spec)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no half-written model left behind
        raise
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    return QuantizeReport(out, spec, count, ckpt.size_bytes, size, time.perf_counter() - start)


def _write(out: Path, tensors: dict[str, torch.Tensor], index: int) -> dict[str, torch.Tensor]:
    """Write one shard as ``part-<i>.safetensors``; returns {name: empty} to remember its names."""
    save_file({k: v.contiguous() for k, v in tensors.items()}, out / f"part-{index}.safetensors", {"format": "pt"})
    return dict.fromkeys(tensors)


def _finish(src: Path, out: Path, shards: list[dict], spec: QuantSpec) -> None:
    if len(shards) == 1:
        (out / "part-0.safetensors").rename(out / "model.safetensors")
    else:
        names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        for i, name in enumerate(names):
            (out / f"part-{i}.safetensors").rename(out / name)
        weight_map = {t: names[i] for i, shard in enumerate(shards) for t in shard}
        (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=1))
    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    config["quantization_config"] = spec.to_json()
    (out / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for f in src.iterdir():  # tokenizer, chat template, generation config, model card...
        if f.is_file() and f.suffix != ".safetensors" and f.name not in ("config.json", *WEIGHT_FILES):
            shutil.copy2(f, out / f.name)
