"""Reading llama.cpp GGUF files: metadata -> ModelConfig, tensors by Hugging Face name.

The file is memory-mapped (gguf-py's ``GGUFReader``, private copy-on-write mapping) and never read
whole. F32/F16/BF16 tensors are zero-copy torch views of the map; Q8_0, Q4_0, Q4_K and Q6_K blocks
become ondol's int8/int4 layouts (``quantized()``, gguf_quant.py) with no float copy; ``tensor()`` still
expands them to float32 for a caller that wants floats. Any other tensor
type is refused when the file is opened, before a single weight is loaded.

Three things differ from a Hugging Face checkpoint and are undone here:

* shapes: GGUF lists dimensions fastest-first (ne0 = columns), torch slowest-first, so they are
  reversed;
* q/k rows: llama.cpp's converter permutes the rows of q_proj/k_proj (weights and biases) of Llama
  and Mistral so that its RoPE can rotate adjacent pairs; ondol rotates halves as HF does, so the
  permutation is inverted. Qwen2 is converted unpermuted (llama.cpp runs it with NEOX rope);
* Llama 3.1-style rope scaling is not in the metadata but in a ``rope_freqs.weight`` tensor of
  per-frequency divisors; the RopeConfig that reproduces it is recovered and checked numerically.
"""

from __future__ import annotations

import math
import mmap
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGMLQuantizationType as QType
from gguf import GGUFReader, GGUFValueType
from gguf.gguf_reader import ReaderField, ReaderTensor
from gguf.quants import dequantize

from ondol.config import ModelConfig, RopeConfig
from ondol.errors import ModelFormatError, UnsupportedModelError
from ondol.loaders import Checkpoint
from ondol.loaders.gguf_quant import QUANTIZED, quant_tensor
from ondol.loaders.names import NO_HF_COUNTERPART, gguf_to_hf
from ondol.model.rope import inv_frequencies
from ondol.quant.formats import QuantTensor

# llama.cpp writes Mistral as "llama"; "mistral" is accepted in case a writer uses it.
SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2")
ROPE_PERMUTED = ("llama", "mistral")
VIEWED = {QType.F32: torch.float32, QType.F16: torch.float16, QType.BF16: torch.bfloat16}
SUPPORTED_TYPES = (*VIEWED, *QUANTIZED)  # QUANTIZED: the block types gguf_quant.py keeps as they are
PAGE = mmap.PAGESIZE
_REQUIRED = object()


def open_gguf(path: Path) -> Checkpoint:
    reader = open_reader(path)
    meta = read_metadata(reader)
    tensors = {t.name: t for t in reader.tensors}
    _check_types(path, tensors)
    shapes = {name: torch_shape(t) for name, t in tensors.items()}
    freqs = tensors.get("rope_freqs.weight")
    rope_freqs = None if freqs is None else _to_torch(freqs).double().numpy()
    config = config_from_gguf(meta, shapes, rope_freqs, path.name)
    types: dict[str, int] = {}
    for t in tensors.values():
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    return Checkpoint(
        path=path,
        format="gguf",
        config=config,
        sources=[GGUFFile(reader, tensors, config)],
        size_bytes=path.stat().st_size,
        tensor_types=types,
        make_tokenizer=lambda: _tokenizer(meta, path),
        generation_config={},  # end-of-turn ids come with the tokenizer metadata
    )


def _tokenizer(meta: dict[str, Any], path: Path):
    from ondol.tokenizer import tokenizer_from_gguf_fields

    return tokenizer_from_gguf_fields(meta, source=str(path))


# --- reading the file -------------------------------------------------------------------------


class _Truncated(ValueError):
    pass


class _Reader(GGUFReader):
    """GGUFReader, bounds-checked and with arrays read whole.

    * gguf-py slices its memory map without bounds checks: past the end of a truncated file it gets
      short or empty arrays (a corrupt array length then loops up to 2**64 times on empty reads).
      Checking every read turns both into one clear error.
    * gguf-py walks arrays element by element, two numpy views per string: ~10 s for Llama 3's
      128k tokens and 280k merges. Here a scalar array is one view, and a string array one byte
      blob (``[u64 length][bytes]`` repeated) that ``read_metadata`` splits.
    """

    def _get(self, offset, dtype, count=1, override_order=None):
        end = int(offset) + np.dtype(dtype).itemsize * int(count)
        if end > len(self.data):
            raise _Truncated(f"its header refers to byte {end}, but the file has only {len(self.data)} bytes")
        return super()._get(offset, dtype, count, override_order)

    def _get_field_parts(self, orig_offs, raw_type):
        if raw_type != GGUFValueType.ARRAY:
            return super()._get_field_parts(orig_offs, raw_type)
        item_type, count = self._get(orig_offs, np.uint32), self._get(orig_offs + 4, np.uint64)
        sub, start = GGUFValueType(int(item_type[0])), orig_offs + 12
        if sub == GGUFValueType.STRING:
            spans = _string_spans(memoryview(self.data), start, int(count[0]), self.byteorder)
            end = max((b for _, b in spans), default=start)  # walking the spans validates every length
            values = self._get(start, np.uint8, end - start)
        elif sub in self.gguf_scalar_to_np:
            values = self._get(start, self.gguf_scalar_to_np[sub], count[0])
        else:  # arrays of arrays: gguf-py's walk (no supported model has them; read_metadata gives None)
            return super()._get_field_parts(orig_offs, raw_type)
        return 12 + int(values.nbytes), [item_type, count, values], [2], [GGUFValueType.ARRAY, sub]

    @property
    def byteorder(self) -> str:
        swapped = {"little": "big", "big": "little"}[sys.byteorder]
        return swapped if self.byte_order == "S" else sys.byteorder


def _string_spans(buf: memoryview, start: int, n: int, byteorder: str):
    """(begin, end) of each of n GGUF strings (u64 length, then the bytes) from buf[start:]."""
    o = start
    for _ in range(n):
        if o + 8 > len(buf):
            raise _Truncated(f"a string length at byte {o} lies past the end of the {len(buf)}-byte file")
        length = int.from_bytes(buf[o : o + 8], byteorder)
        if o + 8 + length > len(buf):
            raise _Truncated(f"a {length}-byte string at byte {o} runs past the end of the {len(buf)}-byte file")
        yield o + 8, o + 8 + length
        o += 8 + length


def open_reader(path: Path) -> GGUFReader:
    try:
        # "c": a private copy-on-write map, so arrays are writable (torch views need that) while
        # the file itself can never be written through them.
        return _Reader(path, "c")
    except _Truncated as e:
        raise ModelFormatError(f"{path.name} is truncated or corrupt: {e}.") from None
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, struct.error, MemoryError) as e:
        raise ModelFormatError(f"{path.name} is not a valid GGUF file ({type(e).__name__}: {e}).") from None


def read_metadata(reader: GGUFReader) -> dict[str, Any]:
    """All key/values of a reader from ``open_reader`` as plain Python values: strings decoded,
    arrays as lists."""
    return {name: _value(f) for name, f in reader.fields.items() if not name.startswith("GGUF.")}


def _value(field: ReaderField) -> Any:
    kind = field.types[0]
    if kind == GGUFValueType.ARRAY:
        if len(field.types) < 2 or field.types[1] == GGUFValueType.ARRAY:
            return None  # arrays of arrays: no supported model has them
        sub, values = field.types[1], field.parts[field.data[0]]  # parts: key..., item type, count, values
        if sub == GGUFValueType.STRING:
            count = field.parts[field.data[0] - 1]  # in the file's byte order, as are the lengths in the blob
            order = {">": "big", "<": "little"}.get(count.dtype.byteorder, sys.byteorder)
            blob = memoryview(values)
            return [_text(blob[a:b]) for a, b in _string_spans(blob, 0, int(count[0]), order)]
        return values.tolist()
    if kind == GGUFValueType.STRING:
        return _text(field.parts[field.data[0]])
    value = field.parts[field.data[0]].tolist()[0]
    if kind == GGUFValueType.FLOAT32:
        # 1e-5 is stored as 9.99999974e-06; its shortest float32 spelling gives back what was written.
        return float(str(np.float32(value)))
    return bool(value) if kind == GGUFValueType.BOOL else value


def _text(raw) -> str:
    # llama.cpp treats strings as bytes; a token that is not valid UTF-8 can never match str input.
    return bytes(raw).decode("utf-8", errors="replace")


def _check_types(path: Path, tensors: dict[str, ReaderTensor]) -> None:
    for name, t in tensors.items():
        if t.tensor_type not in SUPPORTED_TYPES:
            raise UnsupportedModelError(
                f"{path.name}: tensor {name} is stored as {t.tensor_type.name}, which ondol cannot read; "
                f"supported types are {', '.join(q.name for q in SUPPORTED_TYPES)}."
            )


def torch_shape(t: ReaderTensor) -> tuple[int, ...]:
    """GGUF lists ne0 (the contiguous dimension) first; torch lists it last."""
    return tuple(int(d) for d in reversed(t.shape.tolist()))


def _to_torch(t: ReaderTensor) -> torch.Tensor:
    if t.tensor_type in (QType.F32, QType.F16):
        x = torch.from_numpy(t.data)  # zero-copy view of the private map
    elif t.tensor_type == QType.BF16:
        x = torch.from_numpy(t.data).view(torch.bfloat16)  # raw bytes [..., 2 * ne0] -> [..., ne0]
    else:
        x = torch.from_numpy(dequantize(t.data, t.tensor_type))  # float32, blocks of each row expanded
    return x.reshape(torch_shape(t))


def unpermute_rope_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Invert convert_hf_to_gguf's ``LlamaModel.permute`` on q/k rows.

    w is [n_heads * D, in] (or a [n_heads * D] bias). Within a head, HF row ``k * D/2 + j``
    (k in {0, 1}: first or second half) was stored as GGUF row ``2j + k``, so llama.cpp's rotation of
    adjacent pairs matches HF's rotation of halves.
    """
    half = w.shape[0] // n_heads // 2
    return w.reshape(n_heads, half, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


class GGUFFile:
    """The tensors of one GGUF file by HF name (a ``TensorSource``).

    Names the table does not know are passed through as they are, so the loader reports them as
    tensors the architecture does not use; ``rope_freqs.weight`` is folded into the config instead.
    """

    def __init__(self, reader: GGUFReader, tensors: dict[str, ReaderTensor], config: ModelConfig) -> None:
        self.reader = reader
        self.entries = {gguf_to_hf(n) or n: t for n, t in tensors.items() if n not in NO_HF_COUNTERPART}
        self.rope_heads: dict[str, int] = {}  # HF name -> heads, for the rows llama.cpp permuted
        if config.architecture in ROPE_PERMUTED:
            for i in range(config.num_hidden_layers):
                for leaf in ("weight", "bias"):
                    self.rope_heads[f"model.layers.{i}.self_attn.q_proj.{leaf}"] = config.num_attention_heads
                    self.rope_heads[f"model.layers.{i}.self_attn.k_proj.{leaf}"] = config.num_key_value_heads

    def keys(self) -> list[str]:
        return list(self.entries)

    def nbytes(self, name: str) -> int:
        return int(self.entries[name].n_bytes)

    def tensor(self, name: str) -> torch.Tensor:
        x = _to_torch(self.entries[name])
        heads = self.rope_heads.get(name)
        if heads is None:
            return x
        if x.shape[0] % (2 * heads):
            raise ModelFormatError(f"Tensor {name} has shape {tuple(x.shape)}, which does not split into {heads} heads.")
        return unpermute_rope_rows(x, heads)

    def quantized(self, name: str) -> QuantTensor | None:
        """The tensor as ondol's quantized layout (gguf_quant.py) if it is stored in llama.cpp blocks
        ondol computes on directly (Q8_0, Q4_0, Q4_K, Q6_K); None for float tensors."""
        t = self.entries[name]
        if t.tensor_type not in QUANTIZED:
            return None
        q = quant_tensor(t.data, t.tensor_type, torch_shape(t), name)
        heads = self.rope_heads.get(name)
        if heads is not None:
            if q.shape[0] % (2 * heads):
                raise ModelFormatError(f"Tensor {name} has {q.shape[0]} rows, which do not split into {heads} heads.")
            q.qweight, q.scales = unpermute_rope_rows(q.qweight, heads), unpermute_rope_rows(q.scales, heads)
            if q.zeros is not None:
                q.zeros = unpermute_rope_rows(q.zeros, heads)
        return q

    def release(self, name: str) -> None:
        """Drop the tensor's whole pages from memory once a converted copy exists; pages of a private
        map that were never written are re-read from the file if touched again."""
        mm = getattr(self.reader.data, "_mmap", None)
        if mm is None:
            return
        t = self.entries[name]
        start = -(-t.data_offset // PAGE) * PAGE
        stop = (t.data_offset + t.n_bytes) // PAGE * PAGE
        if stop > start:
            mm.madvise(mmap.MADV_DONTNEED, start, stop - start)


# --- metadata -> ModelConfig ------------------------------------------------------------------


class _Keys:
    """Typed access to ``{arch}.*`` metadata, with errors that name the file and the key."""

    def __init__(self, meta: dict[str, Any], arch: str, filename: str) -> None:
        self.meta, self.arch, self.filename = meta, arch, filename

    def _get(self, key: str, default: Any) -> tuple[str, Any]:
        full = f"{self.arch}.{key}"
        if full not in self.meta:
            if default is _REQUIRED:
                raise ModelFormatError(f"{self.filename} lacks the GGUF metadata key {full!r}.")
            return full, default
        value = self.meta[full]
        if isinstance(value, list):
            raise UnsupportedModelError(f"{self.filename}: per-layer values for {full!r} are not supported.")
        return full, value

    def int(self, key: str, default: Any = _REQUIRED) -> Any:
        full, v = self._get(key, default)
        if v is default:
            return v
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ModelFormatError(f"{self.filename}: metadata {full!r} should be a non-negative integer, not {v!r}.")
        return v

    def float(self, key: str, default: Any = _REQUIRED) -> Any:
        full, v = self._get(key, default)
        if v is default:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ModelFormatError(f"{self.filename}: metadata {full!r} should be a number, not {v!r}.")
        return float(v)

    def str(self, key: str, default: Any = _REQUIRED) -> Any:
        full, v = self._get(key, default)
        if v is not default and not isinstance(v, str):
            raise ModelFormatError(f"{self.filename}: metadata {full!r} should be a string, not {v!r}.")
        return v


def config_from_gguf(
    meta: dict[str, Any], shapes: dict[str, tuple[int, ...]], rope_freqs: np.ndarray | None, filename: str = "model.gguf"
) -> ModelConfig:
    """ModelConfig from GGUF metadata and tensor shapes (by GGUF name, torch order)."""
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(
            f"GGUF architecture {arch!r} is not supported; ondol runs {', '.join(SUPPORTED_ARCHITECTURES)}."
        )
    keys = _Keys(meta, arch, filename)
    hidden, heads = keys.int("embedding_length"), keys.int("attention.head_count")
    if hidden == 0 or heads == 0:
        raise ModelFormatError(f"{filename}: embedding_length and attention.head_count must be positive.")
    head_dim = keys.int("attention.key_length", None) or keys.int("rope.dimension_count", None) or hidden // heads
    for key in ("rope.dimension_count", "attention.value_length"):
        if keys.int(key, head_dim) != head_dim:
            raise UnsupportedModelError(f"{filename}: {arch}.{key} differs from the head size {head_dim}.")
    if "token_embd.weight" not in shapes:
        raise ModelFormatError(f"{filename} has no token_embd.weight tensor.")
    return ModelConfig(
        architecture=arch,
        vocab_size=shapes["token_embd.weight"][0],  # [vocab, hidden]: what the model needs, padding included
        hidden_size=hidden,
        intermediate_size=keys.int("feed_forward_length"),
        num_hidden_layers=keys.int("block_count"),
        num_attention_heads=heads,
        num_key_value_heads=keys.int("attention.head_count_kv", heads) or heads,
        head_dim=head_dim,
        rms_norm_eps=keys.float("attention.layer_norm_rms_epsilon"),
        max_position_embeddings=keys.int("context_length"),
        rope=_rope(keys, head_dim, rope_freqs),
        tie_word_embeddings="output.weight" not in shapes,
        qkv_bias="blk.0.attn_q.bias" in shapes,
        o_bias="blk.0.attn_output.bias" in shapes,
        mlp_bias="blk.0.ffn_gate.bias" in shapes,
        sliding_window=keys.int("attention.sliding_window", None) or None,
        torch_dtype=None,
    )


def _rope(keys: _Keys, head_dim: int, rope_freqs: np.ndarray | None) -> RopeConfig:
    theta = keys.float("rope.freq_base", 10000.0)
    kind = keys.str("rope.scaling.type", "none")
    factor = keys.float("rope.scaling.factor", None)
    if rope_freqs is not None:
        if kind != "none":
            raise UnsupportedModelError(f"{keys.filename}: rope_freqs together with {kind!r} rope scaling is not supported.")
        return llama3_rope_from_factors(
            theta, head_dim, rope_freqs, factor=factor, original_context=keys.int("rope.scaling.original_context_length", None)
        )
    if kind == "linear" and factor is not None:
        return RopeConfig(theta=theta, type="linear", factor=factor)
    if kind in ("none", "linear"):
        return RopeConfig(theta=theta)
    raise UnsupportedModelError(
        f"{keys.filename}: rope scaling {kind!r} is not supported; ondol supports none, linear and Llama 3 (rope_freqs)."
    )


# --- Llama 3.1 rope scaling from rope_freqs ------------------------------------------------------


def llama3_rope_from_factors(
    theta: float, head_dim: int, factors: np.ndarray, *, factor: float | None = None, original_context: int | None = None
) -> RopeConfig:
    """The Llama 3 RopeConfig whose inverse frequencies equal ``1 / (theta^(2i/d) * factors[i])``.

    llama.cpp's converter computes ``factors`` from (factor, low_freq_factor, high_freq_factor,
    original_max_position_embeddings) and drops those four numbers. They are recovered from the
    curve (low/high assumed 1 and 4, as in every Llama 3.x release, else fitted), and a candidate is
    accepted only if ondol's own inv_frequencies reproduce the tensor within 1e-6 relative.
    """
    f = np.asarray(factors, dtype=np.float64).reshape(-1)
    if f.shape != (head_dim // 2,) or not np.all(np.isfinite(f)) or f.min() <= 0:
        raise ModelFormatError(f"rope_freqs.weight should hold {head_dim // 2} positive factors, not {f.shape[0]} values.")
    base = inv_frequencies(RopeConfig(theta=theta), head_dim).double()  # [head_dim / 2]
    target = base / torch.from_numpy(f)
    for candidate in _llama3_candidates(theta, base.numpy(), f, factor, original_context):
        got = inv_frequencies(candidate, head_dim).double()
        if bool(torch.all((got - target).abs() <= 1e-6 * target)):
            return candidate
    raise UnsupportedModelError(
        "rope_freqs.weight holds per-frequency rope factors that no Llama 3-style rope scaling reproduces; "
        "ondol cannot run this rope variant."
    )


def _llama3_candidates(theta: float, inv: np.ndarray, f: np.ndarray, factor: float | None, old_hint: int | None):
    factor = factor or float(f.max())  # the longest wavelengths are divided by `factor`
    wavelen = 2 * math.pi / inv
    medium = (f > 1 + 1e-6) & (f < factor * (1 - 1e-6))  # the interpolated band
    # In the band 1/f = (1 - s)/factor + s, with s = (old/wavelen - low) / (high - low).
    s = (1 / f - 1 / factor) / (1 - 1 / factor) if factor > 1 else np.zeros_like(f)
    olds = [old_hint, 8192]
    if medium.any():  # with low = 1, high = 4, each band frequency gives old = (1 + 3s) * wavelen
        olds.append(round(float(np.median((1 + 3 * s[medium]) * wavelen[medium]))))
    else:  # no band: any old with 4 * (longest unscaled wavelength) < old < (shortest scaled one)
        olds.append(math.ceil(4 * float(wavelen[f <= 1 + 1e-6].max(initial=0)) * (1 + 1e-9)))
    for old in dict.fromkeys(o for o in olds if o):
        yield RopeConfig(theta=theta, type="llama3", factor=factor, original_max_position_embeddings=int(old))
    if medium.sum() >= 2:
        # s is linear in inv: s = old / (2 pi (high - low)) * inv - low / (high - low). Fit, take low = 1.
        slope, intercept = np.polyfit(inv[medium], s[medium], 1)
        if intercept < 0:
            high, old = 1 - 1 / float(intercept), -2 * math.pi * float(slope) / float(intercept)
            for digits in (3, 6):  # only the ratios old : low : high matter, so low = 1 loses nothing
                yield RopeConfig(theta=theta, type="llama3", factor=factor, low_freq_factor=1.0,
                                 high_freq_factor=round(high, digits), original_max_position_embeddings=round(old))
