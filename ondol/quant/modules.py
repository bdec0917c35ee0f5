"""Quantized stand-ins for ``nn.Linear`` and ``nn.Embedding``.

A loader swaps a module for its quantized form when it assigns a quantized weight (gpt-fast's
offline-quantize-then-swap, done tensor by tensor so no full-precision model ever exists). The
buffers keep checkpoint names: ``<linear>.qweight``, ``.scales``, ``.zeros`` (formats.py), and
``.bias`` stays a parameter. The matmul is the ``kernels`` object's (kernels.py), chosen once per
model by ``use_kernels``; a module's layout may be repacked by it, so save from ``QuantTensor``s,
not from a running model.
"""

from __future__ import annotations

import torch
from torch import nn

from ondol.quant.formats import QuantTensor


class QuantLinear(nn.Module):
    def __init__(self, tensor: QuantTensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.bits, self.group = tensor.bits, tensor.group
        self.out_features, self.in_features = tensor.shape
        self.register_buffer("qweight", tensor.qweight)
        self.register_buffer("scales", tensor.scales)
        self.register_buffer("zeros", tensor.zeros)
        self.register_parameter("bias", None if bias is None else nn.Parameter(bias, requires_grad=False))
        self.kernels = None  # set by use_kernels
        self.packed = None  # whatever the kernels keep instead of (or beside) the buffers

    def tensor(self) -> QuantTensor:
        return QuantTensor(self.bits, self.group, self.qweight, self.scales, self.zeros)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.kernels.linear(self, x)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, int{self.bits}, group={self.group}" + \
            (", zeros" if self.zeros is not None else "")


class QuantEmbedding(nn.Module):
    """Token embeddings from a quantized table: only the rows looked up are dequantized."""

    def __init__(self, tensor: QuantTensor, dtype: torch.dtype) -> None:
        super().__init__()
        self.bits, self.group, self.dtype = tensor.bits, tensor.group, dtype
        self.num_embeddings, self.embedding_dim = tensor.shape
        self.register_buffer("qweight", tensor.qweight)
        self.register_buffer("scales", tensor.scales)
        self.register_buffer("zeros", tensor.zeros)

    def tensor(self) -> QuantTensor:
        return QuantTensor(self.bits, self.group, self.qweight, self.scales, self.zeros)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        rows = self.tensor().dequantize(self.dtype, rows=tokens.flatten())
        return rows.view(*tokens.shape, self.embedding_dim)


class KernelLinear(nn.Linear):
    """A dense linear whose matmul is the kernels' (a bf16 decode row streams through ondol's own);
    the same parameters under the same names."""

    kernels = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.kernels.dense(self, x)


def use_kernels(model: nn.Module, kernels) -> None:
    """Give every linear of ``model`` the kernels that run it (and let them repack quantized ones)."""
    for m in list(model.modules()):
        if isinstance(m, QuantLinear):
            m.kernels = kernels
            kernels.prepare(m)
        elif type(m) is nn.Linear or isinstance(m, KernelLinear):
            if type(m) is nn.Linear:
                m.__class__ = KernelLinear  # same object, same parameters: only forward differs
            m.kernels = kernels
