"""Finding, inspecting and loading a model from a path a user gives.

A *checkpoint* (``Checkpoint``) is what is on disk, read without loading weights: its config, its
tensors by Hugging Face name (a ``TensorSource``), its tokenizer and generation defaults. ``ondol
info`` stops there; ``load`` goes on to build the model on the meta device and assign each tensor,
converted to the runtime dtype, so no tensor is ever allocated twice.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from collections.abc import Callable

import torch
from torch import nn

from ondol.config import ModelConfig
from ondol.errors import ModelFormatError, ModelNotFoundError, OndolError, UnsupportedModelError
from ondol.model import LlamaForCausalLM
from ondol.model.fused import FusedDecode
from ondol.quant.formats import QuantSpec, QuantTensor, quantize
from ondol.quant.modules import QuantEmbedding, QuantLinear, use_kernels

if TYPE_CHECKING:
    from ondol.tokenizer import Tokenizer

GGUF_MAGIC = b"GGUF"
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt", ".pkl")
# Tensors some checkpoints carry that the model derives itself.
DERIVED = ("rotary_emb.inv_freq",)
# gguf_quant.QUANTIZED by name, without importing gguf-py at start-up (test_gguf.py checks they agree)
QUANTIZED_GGUF = ("Q8_0", "Q4_0", "Q6_K", "Q4_K")
QUANT_PARTS = ("qweight", "scales", "zeros")


class TensorSource(Protocol):
    """Tensors of one file by HF name: ``tensor`` may be a view of a memory map; ``quantized`` gives
    a tensor stored in quantized blocks as a QuantTensor (None for float tensors); ``release``
    frees the source's memory for a tensor once a converted copy of it exists."""

    def keys(self) -> list[str]: ...
    def nbytes(self, name: str) -> int: ...
    def tensor(self, name: str) -> torch.Tensor: ...
    def quantized(self, name: str) -> QuantTensor | None: ...
    def release(self, name: str) -> None: ...


@dataclass
class Checkpoint:
    path: Path
    format: str  # "safetensors" | "gguf"
    config: ModelConfig
    sources: list[TensorSource]
    size_bytes: int
    tensor_types: dict[str, int]  # stored type name -> tensor count, e.g. {"BF16": 201} or {"Q4_0": 154, "F32": 45}
    make_tokenizer: Callable[[], Tokenizer]
    generation_config: dict[str, Any] = field(default_factory=dict)
    quant: QuantSpec | None = None  # an ondol-quantized folder's quantization_config

    @property
    def quantized(self) -> bool:
        """Whether weights are stored quantized (an ondol folder, or GGUF blocks ondol computes on)."""
        return self.quant is not None or any(t in QUANTIZED_GGUF for t in self.tensor_types)


@dataclass
class LoadedModel:
    checkpoint: Checkpoint
    model: LlamaForCausalLM
    tokenizer: Tokenizer

    @property
    def config(self) -> ModelConfig:
        return self.checkpoint.config


def find(path: str | Path) -> tuple[str, Path]:
    """("hf" | "gguf", path) for what a user passed, or a ModelNotFoundError/ModelFormatError that says why not."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelNotFoundError(f"No model at {path}: the path does not exist.")
    if p.is_dir():
        if (p / "config.json").exists():
            return "hf", p
        ggufs = sorted(p.glob("*.gguf"))
        if len(ggufs) == 1:
            return "gguf", ggufs[0]
        if ggufs:
            raise ModelNotFoundError(f"{p} holds several GGUF files ({', '.join(g.name for g in ggufs)}); name one.")
        raise ModelNotFoundError(f"{p} is not a model folder: it has neither a config.json nor a .gguf file.")
    if p.suffix in PICKLE_SUFFIXES:
        raise ModelFormatError(f"{p.name} is a pickle file; ondol never unpickles model files. Use safetensors or GGUF.")
    with open(p, "rb") as f:
        magic = f.read(4)
    if magic == GGUF_MAGIC:
        return "gguf", p
    if p.suffix == ".gguf":
        raise ModelFormatError(f"{p.name} is not a valid GGUF file (it does not start with the GGUF magic).")
    if p.suffix == ".safetensors":
        raise ModelNotFoundError(f"{p.name} is a weights file; pass the folder that holds it and its config.json.")
    raise ModelNotFoundError(f"{p} is not a model: expected a Hugging Face folder or a .gguf file.")


def open_checkpoint(path: str | Path) -> Checkpoint:
    kind, p = find(path)
    if kind == "gguf":
        from ondol.loaders.gguf import open_gguf

        return open_gguf(p)
    return _open_hf(p)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"{path.name} is not valid JSON: {e}.") from None
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path.name} is not a JSON object.")
    return data


def _open_hf(folder: Path) -> Checkpoint:
    from ondol.loaders.safetensors import SafetensorsFile, weight_files

    raw = _read_json(folder / "config.json")
    config = ModelConfig.from_hf(raw)
    quant = None
    if raw.get("quantization_config") is not None:
        qc = raw["quantization_config"]
        if not isinstance(qc, dict) or qc.get("quant_method") != "ondol":
            method = qc.get("quant_method") if isinstance(qc, dict) else qc
            raise UnsupportedModelError(f"{folder.name} is quantized with {method!r}, which ondol does not run; "
                                        "use the full-precision model (ondol quantizes it itself) or a GGUF file.")
        quant = QuantSpec.from_json(qc)
    files = weight_files(folder)
    sources = [SafetensorsFile(f) for f in files]
    types: dict[str, int] = {}
    for s in sources:
        for name in s.keys():
            t = str(s.entries[name][0]).removeprefix("torch.")
            types[t] = types.get(t, 0) + 1
    gen_path = folder / "generation_config.json"
    return Checkpoint(
        path=folder,
        format="safetensors",
        config=config,
        sources=sources,
        size_bytes=sum(f.stat().st_size for f in files),
        tensor_types=types,
        make_tokenizer=lambda: _hf_tokenizer(folder),
        generation_config=_read_json(gen_path) if gen_path.exists() else {},
        quant=quant,
    )


def _hf_tokenizer(folder: Path) -> Tokenizer:
    from ondol.tokenizer import Tokenizer

    return Tokenizer.from_folder(folder)


def runtime_dtype(checkpoint: Checkpoint, dtype: str | torch.dtype = "auto") -> torch.dtype:
    """"auto" keeps float32 and bfloat16 checkpoints as they are and runs float16 (and quantized
    GGUF) as bfloat16, which CPUs compute far faster than float16."""
    if isinstance(dtype, torch.dtype):
        return dtype
    named = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype != "auto":
        if dtype not in named:
            raise OndolError(f"Unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16.")
        return named[dtype]
    stored = checkpoint.config.torch_dtype
    if stored is None:
        stored = "float32" if set(checkpoint.tensor_types) <= {"float32", "F32"} else "bfloat16"
    return torch.float32 if stored in ("float32", "F32") else torch.bfloat16


def load(path: str | Path, dtype: str | torch.dtype = "auto", progress: bool | None = None,
         quant: str | QuantSpec | None = None, kernels: str = "auto") -> LoadedModel:
    """Load a model for inference. ``quant`` ("int8", "int4" or a QuantSpec) quantizes a
    full-precision checkpoint tensor by tensor as it loads; quantized checkpoints (an ondol
    quantized folder, GGUF Q8_0/Q4_0/Q4_K/Q6_K tensors) stay quantized as stored. ``kernels``
    picks the matmuls: "auto" (the fastest this machine has), "compiled", "torch" or "reference";
    with the compiled kernels, decode steps run all layers in one call (model/fused.py)."""
    checkpoint = open_checkpoint(path)
    spec = QuantSpec.named(quant) if isinstance(quant, str) else quant
    if spec is not None and checkpoint.quantized:
        raise OndolError(f"{checkpoint.path.name} is already quantized "
                         f"({', '.join(sorted(checkpoint.tensor_types))}); load it without quant=.")
    tokenizer = checkpoint.make_tokenizer()
    target = runtime_dtype(checkpoint, dtype)
    with torch.device("meta"):
        model = LlamaForCausalLM(checkpoint.config)
    _assign_weights(model, checkpoint, target, _show_progress(progress), spec)
    model.eval()
    from ondol.quant.kernels import kernels_named

    use_kernels(model, kernels_named(kernels))
    model.fused = FusedDecode.build(model)  # None unless every linear runs on the compiled kernels
    return LoadedModel(checkpoint, model, tokenizer)


def _show_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def _quantized_modules(model: LlamaForCausalLM, spec: QuantSpec | None) -> set[str]:
    """Names of the modules a QuantSpec quantizes at load: every linear of the decoder layers, the
    head and the embeddings as it says (tied embeddings follow the head)."""
    if spec is None:
        return set()
    names = {n for n, m in model.model.layers.named_modules(prefix="model.layers") if isinstance(m, nn.Linear)}
    tie = model.config.tie_word_embeddings
    if spec.head:
        names.add("lm_head")
    if (spec.head if tie else spec.embeddings):
        names.add("model.embed_tokens")
    return names


def _assign_weights(model: LlamaForCausalLM, ckpt: Checkpoint, dtype: torch.dtype, progress: bool,
                    spec: QuantSpec | None = None) -> None:
    params = dict(model.named_parameters())
    tie = ckpt.config.tie_word_embeddings
    if tie:
        params.pop("lm_head.weight")
    to_quantize = _quantized_modules(model, spec)
    loaded: set[str] = set()
    unexpected: list[str] = []
    parts: dict[str, dict[str, torch.Tensor]] = {}  # module -> qweight/scales/zeros of an ondol folder
    total = sum(s.nbytes(n) for s in ckpt.sources for n in s.keys())
    with _progress_bar(progress, total, f"Loading {ckpt.path.name}") as advance:
        for source in ckpt.sources:
            for name in source.keys():
                advance(source.nbytes(name))
                module, _, leaf = name.rpartition(".")
                if name.endswith(DERIVED) or (tie and name == "lm_head.weight"):
                    continue
                if leaf in QUANT_PARTS and f"{module}.weight" in params:
                    parts.setdefault(module, {})[leaf] = source.tensor(name)
                    continue
                if name not in params:
                    unexpected.append(name)
                    continue
                t = source.quantized(name)
                group = spec.group_for(params[name].shape[1]) if module in to_quantize and leaf == "weight" else None
                if t is None and group is not None:
                    t = quantize(source.tensor(name), spec.bits, group, spec.symmetric)
                if t is not None:
                    _trim_heap()
                    _check_shape(name, t.shape, params[name].shape)
                    source.release(name)
                    _swap(model, module, t, dtype)
                    loaded.add(name)
                    continue
                t = source.tensor(name)
                _check_shape(name, t.shape, params[name].shape)
                if t.dtype != dtype:
                    t = t.to(dtype)
                    source.release(name)
                model.get_submodule(module)._parameters[leaf] = nn.Parameter(t, requires_grad=False)
                loaded.add(name)
    for module, found in parts.items():
        if ckpt.quant is None or "qweight" not in found or "scales" not in found:
            raise ModelFormatError(f"{module} has quantized parts ({', '.join(sorted(found))}) but "
                                   "config.json has no complete ondol quantization_config and tensors to match.")
        t = QuantTensor.from_parts(ckpt.quant.bits, found["qweight"], found["scales"], found.get("zeros"), module)
        _check_shape(f"{module}.weight", t.shape, params[f"{module}.weight"].shape)
        _swap(model, module, t, dtype)
        loaded.add(f"{module}.weight")
    missing = sorted(set(params) - loaded)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ModelFormatError(f"The checkpoint lacks tensors the model needs: {shown}.")
    if unexpected:
        shown = ", ".join(unexpected[:5])
        raise ModelFormatError(f"The checkpoint has tensors this architecture does not use: {shown}.")
    if tie:
        embed = model.model.embed_tokens
        if isinstance(embed, QuantEmbedding):
            model.lm_head = QuantLinear(embed.tensor())  # the same buffers: one table in memory
        else:
            model.tie_weights()


def _check_shape(name: str, got, want) -> None:
    if tuple(got) != tuple(want):
        raise ModelFormatError(f"Tensor {name} has shape {tuple(got)}, but the config implies {tuple(want)}.")


def _trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's malloc_trim). Rounding a weight, or
    converting llama.cpp blocks, frees megabytes of temporaries between the quantized weights that
    stay; without this the holes stayed resident: an int8 1B model held ~0.6 GB more than its
    weights after loading."""
    if _libc is not None:
        _libc.malloc_trim(0)


def _load_libc():
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_libc = _load_libc()


def _swap(model: nn.Module, name: str, t: QuantTensor, dtype: torch.dtype) -> None:
    """Put the quantized form of module ``name`` (a Linear or an Embedding on the meta device) in its
    place, keeping a bias already assigned."""
    parent, _, attr = name.rpartition(".")
    owner = model.get_submodule(parent) if parent else model
    old = getattr(owner, attr)
    if isinstance(old, nn.Embedding):
        new: nn.Module = QuantEmbedding(t, dtype)
    else:
        bias = old._parameters.get("bias")
        new = QuantLinear(t, None if bias is None or bias.is_meta else bias.data)
        if bias is not None and bias.is_meta:
            new._parameters["bias"] = bias  # assigned when the loader reaches it; reported missing if never
    setattr(owner, attr, new)


class _progress_bar:
    """A rich progress bar over bytes, or nothing when not wanted; yields an ``advance(n)`` function."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.enabled, self.total, self.label = enabled, total, label

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                            transient=True)
        self.bar.__enter__()
        task = self.bar.add_task(self.label, total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)
