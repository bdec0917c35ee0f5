"""The matmuls of quantized linears: ``y = x @ W.T + b`` with W in a formats.py layout.

Each kernel set has ``prepare(module)`` (run once at load: repack, cache what it needs) and
``linear(module, x)`` for x [..., K] in the model's dtype.

* ``ReferenceKernels``: dequantize to float32 and multiply in float32. Slow, exact: what every
  faster set is tested against.
* ``TorchKernels``: PyTorch's own CPU kernels: ``_weight_int8pack_mm`` for int8 with one scale per
  row, ``_weight_int4pack_mm_for_cpu`` for int4 with outputs in multiples of 16 (repacked to its
  tile layout at load), and the reference's dequantize-then-matmul, in the model's dtype, for what
  neither takes (int8 in groups, other int4).
* ``CompiledKernels``: ondol's own (csrc/kernels.cpp, built on first use): for a few rows (decode)
  AVX-512 loops that stream the weights once, bf16 weights included; for many rows (prefill) of a
  bf16 model the weight dequantized (or copied) to float32 into a reused buffer and PyTorch's float32 GEMM (weights
  above SCRATCH_LIMIT, such as an output head, and float32 models stream 16 rows at a time). int4 and int8 round
  the activations to int8 per block of 32 and multiply in integers, as llama.cpp does
  (``int8_activations_reference`` is that arithmetic in PyTorch); int8 with K not a multiple of
  64 multiplies in float32 with exact activations.

Dense bf16 linears get the kernels too (``KernelLinear``), as the decode of a bf16 model needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ondol.errors import OndolError
from ondol.quant.formats import unpack_int4
from ondol.quant.modules import QuantLinear


class ReferenceKernels:
    name = "reference"

    def prepare(self, m: QuantLinear) -> None:
        pass

    def dense(self, m: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, m.weight, m.bias)

    def linear(self, m: QuantLinear, x: torch.Tensor) -> torch.Tensor:
        w = m.tensor().dequantize(torch.float32)
        bias = None if m.bias is None else m.bias.float()
        return F.linear(x.float(), w, bias).to(x.dtype)


class TorchKernels(ReferenceKernels):
    name = "torch"

    def prepare(self, m: QuantLinear) -> None:
        if m.bits == 8 and m.group == m.in_features:
            m.packed = ("int8pack", m.scales[:, 0])
        elif m.bits == 4 and m.out_features % 16 == 0:  # the tile layout packs outputs in 16s
            q = m.tensor()
            values = unpack_int4(q.qweight).to(torch.int32)
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(values, 2)
            zeros = q.zeros if q.zeros is not None else torch.zeros_like(q.scales)
            # [K/group, N, 2]: (scale, zero) of each group of each output
            scales_zeros = torch.stack([q.scales.T, zeros.T], dim=-1).contiguous()
            m.packed = ("int4pack", packed, scales_zeros)
        else:
            m.packed = ("dequantize",)

    def linear(self, m: QuantLinear, x: torch.Tensor) -> torch.Tensor:
        kind = m.packed[0]
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if kind == "int8pack":  # scales in the activations' dtype, as the kernel wants
            y = torch._weight_int8pack_mm(x2, m.qweight, m.packed[1].to(x.dtype))
        elif kind == "int4pack":
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, m.packed[1], m.group, m.packed[2].to(x.dtype))
        else:
            y = F.linear(x2, m.tensor().dequantize(x.dtype))
        if m.bias is not None:
            y = y + m.bias.to(y.dtype)
        return y.view(*shape[:-1], m.out_features)


class CompiledKernels(TorchKernels):
    name = "compiled"
    DECODE_ROWS = 16  # up to this many rows, stream the weights; beyond, dequantize once and GEMM
    SCRATCH_LIMIT = 64 << 20  # weights larger than this (an output head) never dequantize whole

    def __init__(self, quiet: bool = False) -> None:
        from ondol.quant import build

        try:
            build.load(quiet)
        except build.KernelsUnavailable as e:
            raise OndolError(f"ondol's compiled kernels are unavailable: {e}.") from None
        self.scratch = torch.empty(0)  # float32, grown to the largest weight a prompt multiplies (_gemm)

    def prepare(self, m: QuantLinear) -> None:
        if m.bits == 8 and m.group % 16:
            super().prepare(m)  # ondol's int8 loops take groups that are multiples of 16
        else:
            m.packed = ("compiled",)

    def linear(self, m: QuantLinear, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).contiguous()
        rows, n, k = x2.shape[0], m.out_features, m.in_features
        prefill = rows > self.DECODE_ROWS and n * k <= self.SCRATCH_LIMIT and x.dtype == torch.bfloat16
        if m.packed[0] != "compiled" or x.dtype not in (torch.bfloat16, torch.float32):
            return super().linear(m, x)
        if prefill:
            return self._gemm(x, n, k, lambda w: torch.ops.ondol.dequantize(m.qweight, m.scales, m.zeros, m.bits,
                                                                             m.group, w), m.bias)
        parts = [self._stream(m, x2[i : i + self.DECODE_ROWS]) for i in range(0, rows, self.DECODE_ROWS)]
        y = parts[0] if len(parts) == 1 else torch.cat(parts)
        if m.bias is not None:
            y = y + m.bias.to(y.dtype)
        return y.view(*shape[:-1], n)

    def _gemm(self, x: torch.Tensor, n: int, k: int, fill, bias: torch.Tensor | None) -> torch.Tensor:
        """Many rows of a bf16 model (a prompt): the weight written into the float32 scratch by
        ``fill`` (n * k <= SCRATCH_LIMIT), then PyTorch's float32 GEMM. On AVX-512 CPUs without AMX
        that GEMM runs 1.2-1.6x PyTorch's bf16 one for a 128-512-token prompt, the copy included
        (docs/performance.md)."""
        if self.scratch.numel() < n * k:  # one buffer, as large as the largest weight multiplied so far
            self.scratch = torch.empty(n * k)
        w = self.scratch[: n * k].view(n, k)
        fill(w)
        y = F.linear(x.to(w.dtype), w, None if bias is None else bias.to(w.dtype))
        return y.to(x.dtype)

    @staticmethod
    def _stream(m: QuantLinear, x: torch.Tensor) -> torch.Tensor:
        if m.bits == 8:
            return torch.ops.ondol.int8_linear(x, m.qweight, m.scales, m.group)
        return torch.ops.ondol.int4_linear(x, m.qweight, m.scales, m.zeros, m.group)

    def dense(self, m: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if x.dtype != torch.bfloat16 or m.weight.dtype != torch.bfloat16 or \
                (torch.is_grad_enabled() and (x.requires_grad or m.weight.requires_grad)):  # training: autograd
            return F.linear(x, m.weight, m.bias)
        if rows > self.DECODE_ROWS:
            if m.weight.numel() > self.SCRATCH_LIMIT:
                return F.linear(x, m.weight, m.bias)
            return self._gemm(x, m.out_features, m.in_features, lambda w: w.copy_(m.weight), m.bias)
        y = torch.ops.ondol.bf16_linear(x.reshape(rows, -1).contiguous(), m.weight)
        if m.bias is not None:
            y = y + m.bias
        return y.view(*x.shape[:-1], m.out_features)


def int8_activations_reference(m: QuantLinear, x: torch.Tensor) -> torch.Tensor:
    """What CompiledKernels computes for a few rows of int4, and of int8 with K a multiple of 64, in
    float32 PyTorch: x rounded to int8 per block of 32 (scale max|x| / 127, round half to even),
    times the dequantized weight."""
    x2 = x.reshape(-1, x.shape[-1]).float()
    blocks = x2.view(x2.shape[0], -1, 32)
    d = blocks.abs().amax(-1, keepdim=True) / 127
    xq = torch.where(d > 0, torch.round(blocks / torch.where(d > 0, d, torch.ones_like(d))), torch.zeros_like(blocks))
    y = F.linear((xq * d).view_as(x2), m.tensor().dequantize(torch.float32))
    if m.bias is not None:
        y = y + m.bias.float()
    return y.view(*x.shape[:-1], m.out_features)


KERNELS = {"reference": ReferenceKernels, "torch": TorchKernels, "compiled": CompiledKernels}


def kernels_named(name: str):
    """"auto": ondol's compiled kernels where this machine builds them, else PyTorch's; or a set
    by name ("compiled" fails with the reason when they cannot be built)."""
    if name == "auto":
        try:
            return CompiledKernels()
        except OndolError:
            return TorchKernels()
    if name not in KERNELS:
        raise OndolError(f"Unknown kernels {name!r}; use auto, {', '.join(KERNELS)}.")
    return KERNELS[name]()
