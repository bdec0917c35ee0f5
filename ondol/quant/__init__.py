"""Weight-only quantization (int8, int4) and the CPU kernels that run it: docs/quantization.md."""

from ondol.quant.formats import QuantSpec, QuantTensor, quantize

__all__ = ["QuantSpec", "QuantTensor", "quantize"]
