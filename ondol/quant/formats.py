"""How ondol stores weight-only quantized tensors, in memory and in safetensors files.

A weight W [N, K] (N outputs, K inputs; an embedding is [vocab, hidden]) is cut along K into groups
of ``group`` consecutive inputs (K % group == 0; ``group == K`` is one scale per row). For each
row n and group g there is a float16 scale (and, for asymmetric int4, a float16 zero):

* int8: ``qweight`` int8 [N, K];          W[n, k] = scales[n, g] * q[n, k]
* int4: ``qweight`` uint8 [N, K // 2];    W[n, k] = scales[n, g] * (q[n, k] - 8) + zeros[n, g]
  (q in 0..15; without ``zeros`` the zero is 0, which is llama.cpp's Q4_0). The nibbles follow
  Q4_0's order, so a Q4_0 tensor loads by copying bytes: in each block of 32 inputs, byte j
  (0..15) holds input j in its low nibble and input j + 16 in its high nibble.

``scales`` and ``zeros`` are float16 [N, K // group], as GGUF stores its block scales. A checkpoint
folder records the format in config.json (``quantization_config``, see ``QuantSpec.to_json``) and
stores ``<linear>.qweight``, ``<linear>.scales`` (and ``<linear>.zeros``) in place of
``<linear>.weight``; docs/quantization.md describes it for other readers.

Everything here is plain PyTorch: the reference the compiled kernels are tested against.
"""

from __future__ import annotations

from collections.abc import Callable

from dataclasses import dataclass
from typing import Any

import torch

from ondol.errors import ModelFormatError, OndolError

FORMAT = "ondol-wq1"  # bumped if the layout above ever changes
BLOCK = 32  # the nibble-order block; every group is a multiple of it
GROUP_SIZES = (32, 64, 128)


@dataclass(frozen=True)
class QuantSpec:
    """What to quantize and how. ``group`` None is one scale per output row (int8 only).
    ``head``/``embeddings``: whether the output head and the token embeddings are quantized too
    (with tied embeddings they are one tensor, so both follow ``head``)."""

    bits: int  # 8 or 4
    group: int | None = None
    symmetric: bool = True  # int4: False stores zeros (min/max rounding), more accurate for its 0.25 bit/weight
    head: bool = True
    embeddings: bool = True

    def __post_init__(self) -> None:
        if self.bits not in (4, 8):
            raise OndolError(f"Quantization to {self.bits} bits is not supported; use int8 or int4.")
        if self.group is not None and self.group not in GROUP_SIZES:
            raise OndolError(f"Group size {self.group} is not supported; use one of {', '.join(map(str, GROUP_SIZES))}.")
        if self.bits == 4 and self.group is None:
            raise OndolError("int4 needs a group size (32, 64 or 128).")
        if self.bits == 8 and not self.symmetric:
            raise OndolError("int8 is symmetric: its 256 levels leave nothing for a zero to win.")

    @classmethod
    def named(cls, name: str, group: int | None = None, **kw: Any) -> QuantSpec:
        """"int8" (per-row scales unless a group is given) or "int4" (groups of 64 with zeros:
        4.5 bits per weight, as many as Q4_0, with min/max rounding)."""
        if name == "int8":
            return cls(8, group, **kw)
        if name == "int4":
            return cls(4, group or 64, symmetric=kw.pop("symmetric", False), **kw)
        raise OndolError(f"Unknown quantization {name!r}; use int8 or int4.")

    def group_for(self, k: int) -> int | None:
        """The group for a weight with k inputs: the one asked for, else the largest smaller one that
        divides k; None when none does (that weight stays in full precision)."""
        if self.group is None:
            return k
        return next((g for g in sorted(GROUP_SIZES, reverse=True) if g <= self.group and k % g == 0), None)

    def describe(self) -> str:
        """For people: "int4, groups of 64 with zeros", "int8, one scale per row"."""
        group = f"groups of {self.group}" if self.group else "one scale per row"
        return f"int{self.bits}, {group}" + (" with zeros" if self.bits == 4 and not self.symmetric else "")

    def to_json(self) -> dict[str, Any]:
        return {"quant_method": "ondol", "format": FORMAT, "bits": self.bits, "group_size": self.group,
                "symmetric": self.symmetric, "head": self.head, "embeddings": self.embeddings}

    @classmethod
    def from_json(cls, cfg: dict[str, Any]) -> QuantSpec:
        if cfg.get("quant_method") != "ondol" or cfg.get("format") != FORMAT:
            raise ModelFormatError(f"quantization_config {cfg.get('quant_method')!r}/{cfg.get('format')!r} is not a "
                                   f"format ondol reads (it reads quant_method 'ondol', format {FORMAT!r}).")
        try:
            return cls(int(cfg["bits"]), cfg.get("group_size"), bool(cfg.get("symmetric", True)),
                       bool(cfg.get("head", True)), bool(cfg.get("embeddings", True)))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFormatError(f"quantization_config is malformed: {e}.") from None


@dataclass
class QuantTensor:
    """One quantized weight: the layout in the module docstring. ``shape`` is the weight's (N, K)."""

    bits: int
    group: int
    qweight: torch.Tensor
    scales: torch.Tensor
    zeros: torch.Tensor | None = None

    @classmethod
    def from_parts(cls, bits: int, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None,
                   name: str) -> QuantTensor:
        """A tensor from a file's parts, checked (the file is untrusted); the group follows from
        the number of scales per row."""
        if qweight.dim() != 2 or scales.dim() != 2 or scales.shape[1] == 0:
            raise ModelFormatError(f"Quantized tensor {name}: qweight and scales should be 2-D, not "
                                   f"{tuple(qweight.shape)} and {tuple(scales.shape)}.")
        k = qweight.shape[1] * (2 if bits == 4 else 1)
        if k % scales.shape[1]:
            raise ModelFormatError(f"Quantized tensor {name}: {scales.shape[1]} scales per row do not cut its {k} "
                                   "inputs into equal groups.")
        t = cls(bits, k // scales.shape[1], qweight, scales, zeros)
        t.check(name)
        return t

    @property
    def shape(self) -> tuple[int, int]:
        n, packed = self.qweight.shape
        return n, packed * (2 if self.bits == 4 else 1)

    def check(self, name: str) -> None:
        """Raise ModelFormatError unless the parts agree with each other (untrusted files)."""
        n, k = self.shape
        want_q = torch.uint8 if self.bits == 4 else torch.int8
        problems = []
        if self.qweight.dtype != want_q or self.qweight.dim() != 2:
            problems.append(f"qweight should be 2-D {want_q}, not {self.qweight.dim()}-D {self.qweight.dtype}")
        elif self.group <= 0 or k % self.group or (self.bits == 4 and self.group % BLOCK):
            problems.append(f"group size {self.group} does not divide the {k} inputs in blocks of {BLOCK}")
        for part, t in (("scales", self.scales), ("zeros", self.zeros)):
            if t is not None and (t.dtype != torch.float16 or tuple(t.shape) != (n, k // max(self.group, 1))):
                problems.append(f"{part} should be float16 {(n, k // max(self.group, 1))}, not {t.dtype} {tuple(t.shape)}")
        if problems:
            raise ModelFormatError(f"Quantized tensor {name}: {'; '.join(problems)}.")

    def dequantize(self, dtype: torch.dtype = torch.float32, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The weight [N, K] (or only ``rows``) in ``dtype``, computed in float32."""
        q, s, z = self.qweight, self.scales, self.zeros
        if rows is not None:
            q, s = q[rows], s[rows]
            z = None if z is None else z[rows]
        n = q.shape[0]
        if self.bits == 4:
            q = unpack_int4(q).float() - 8  # [n, K]
        else:
            q = q.float()
        w = q.view(n, -1, self.group) * s.float()[..., None]
        if z is not None:
            w = w + z.float()[..., None]
        return w.view(n, -1).to(dtype)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in (self.qweight, self.scales, self.zeros) if t is not None)


def quantize(w: torch.Tensor, bits: int, group: int, symmetric: bool = True, rows: int = 1024) -> QuantTensor:
    """Round a weight [N, K] to the format (round to nearest, in float32), ``rows`` rows at a
    time so a 128k-row embedding never exists in float32 whole."""
    n, k = w.shape
    if k % group or (bits == 4 and group % BLOCK):
        raise OndolError(f"A weight with {k} inputs cannot be cut into groups of {group}.")
    return by_rows(lambda a, b: _quantize(w[a:b], bits, group, symmetric), n, rows)


def by_rows(convert: Callable[[int, int], QuantTensor], n: int, rows: int = 1024) -> QuantTensor:
    """A tensor of ``n`` rows built ``rows`` rows at a time by ``convert(start, stop)``, each slice
    written into one preallocated output: the temporaries of a slice stay small, and no list of
    parts doubles the result at the end (for a 128k-row embedding, hundreds of MB either way)."""
    if n <= rows:
        return convert(0, n)
    first = convert(0, rows)
    out = QuantTensor(first.bits, first.group, first.qweight.new_empty(n, first.qweight.shape[1]),
                      first.scales.new_empty(n, first.scales.shape[1]),
                      None if first.zeros is None else first.zeros.new_empty(n, first.zeros.shape[1]))
    for i in range(0, n, rows):
        part = first if i == 0 else convert(i, min(i + rows, n))
        out.qweight[i : i + rows] = part.qweight
        out.scales[i : i + rows] = part.scales
        if out.zeros is not None:
            out.zeros[i : i + rows] = part.zeros
    return out


def _quantize(w: torch.Tensor, bits: int, group: int, symmetric: bool) -> QuantTensor:
    n, k = w.shape
    x = w.detach().float().view(n, k // group, group)
    if bits == 8:
        scales = (x.abs().amax(-1) / 127).to(torch.float16)
        q = _divide(x, scales).round().clamp(-127, 127).to(torch.int8).view(n, k)
        return QuantTensor(8, group, q, scales)
    if symmetric:
        # Q4_0's rounding: the value of largest magnitude maps to -8 exactly, so the sign with the
        # wider reach (-8..7) is spent on it.
        extreme = x.gather(-1, x.abs().argmax(-1, keepdim=True)).squeeze(-1)
        scales = (extreme / -8).to(torch.float16)
        q = (_divide(x, scales) + 8).round().clamp(0, 15)
        zeros = None
    else:
        lo, hi = x.amin(-1), x.amax(-1)
        scales = ((hi - lo) / 15).to(torch.float16)
        zeros = (lo + 8 * scales.float()).to(torch.float16)
        q = (_divide(x - zeros.float()[..., None], scales) + 8).round().clamp(0, 15)
    return QuantTensor(4, group, pack_int4(q.to(torch.uint8).view(n, k)), scales, zeros)


def _divide(x: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """x / scale per group, 0 where the group is all zeros (scale 0)."""
    s = scales.float()[..., None]
    return torch.where(s == 0, torch.zeros_like(x), x / torch.where(s == 0, torch.ones_like(s), s))


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """[N, K/2] in Q4_0 nibble order -> uint8 [N, K] of values 0..15 (pack_int4's inverse)."""
    n = packed.shape[0]
    blocks = packed.view(n, -1, BLOCK // 2)  # [n, K/32, 16]: low nibbles first halves, high second
    return torch.cat([blocks & 0x0F, blocks >> 4], dim=-1).view(n, -1)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """q uint8 [N, K] of values 0..15 -> [N, K/2] in Q4_0 nibble order."""
    n, k = q.shape
    blocks = q.view(n, k // BLOCK, 2, BLOCK // 2)  # [n, blocks, low half / high half, 16]
    return (blocks[:, :, 0] | (blocks[:, :, 1] << 4)).view(n, k // 2)
