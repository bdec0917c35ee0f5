"""Weight-only quantized formats and kernels: rounding bounds, the nibble layout, and every kernel
set against the plain-PyTorch reference."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

from ondol.errors import ModelFormatError, OndolError
from ondol.loaders.gguf_quant import quant_tensor
from ondol.quant.formats import QuantSpec, QuantTensor, pack_int4, quantize
from ondol.quant.kernels import KERNELS, ReferenceKernels, kernels_named
from ondol.quant.modules import QuantLinear


def weight(n: int = 96, k: int = 256, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * 0.05
    w[3] *= 40  # one loud row, and a silent one: scales differ by row
    w[5] = 0
    return w


@pytest.mark.parametrize("bits,group,symmetric", [(8, None, True), (8, 32, True), (4, 32, True), (4, 64, False),
                                                  (4, 128, False), (4, 128, True)])
def test_rounding_error_is_within_a_step(bits, group, symmetric):
    w = weight()
    spec = QuantSpec(bits, group, symmetric)
    g = spec.group_for(w.shape[1])
    t = quantize(w, bits, g, symmetric)
    t.check("w")
    back = t.dequantize()
    step = t.scales.float().abs().repeat_interleave(g, dim=1)
    # Q4_0's rounding spends -8 on the extreme value, so the other side clamps at +7: a whole step
    # there. fp16 scales and zeros add their own rounding.
    reach = 1.0 if (bits, symmetric) == (4, True) else 0.5
    assert ((back - w).abs() <= step * reach + w.abs() * 2e-3 + 1e-6).all()
    assert torch.equal(back[5], torch.zeros_like(back[5]))
    bits_per_weight = t.nbytes * 8 / w.numel()
    assert bits_per_weight <= bits + 32 / g + 1e-9


def test_int4_nibbles_are_in_q4_0_order():
    """Q4_0 bytes from gguf-py load by copying; packing their values again gives the same bytes."""
    w = weight(8, 128).numpy()
    raw = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q4_0)
    t = quant_tensor(raw, gguf.GGMLQuantizationType.Q4_0, w.shape, "w")
    want = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q4_0)
    assert torch.equal(t.dequantize(), torch.from_numpy(want))
    blocks = t.qweight.view(8, -1, 16)
    values = torch.cat([blocks & 15, blocks >> 4], dim=-1).view(8, 128)
    assert torch.equal(pack_int4(values), t.qweight)


def test_a_group_that_does_not_divide_falls_back_to_a_smaller_one():
    spec = QuantSpec.named("int4", 128)
    assert spec.group_for(256) == 128 and spec.group_for(160) == 32 and spec.group_for(100) is None
    assert QuantSpec.named("int8").group_for(100) == 100


@pytest.mark.parametrize("bad", [dict(bits=3), dict(bits=4, group=None), dict(bits=8, group=48),
                                 dict(bits=8, group=32, symmetric=False)])
def test_impossible_specs_are_refused(bad):
    with pytest.raises(OndolError):
        QuantSpec(**bad)


def test_parts_that_disagree_are_a_format_error():
    t = quantize(weight(), 4, 32, False)
    with pytest.raises(ModelFormatError, match="3 scales per row do not cut its 256 inputs"):
        QuantTensor.from_parts(4, t.qweight, t.scales[:, :3], t.zeros, "x")
    with pytest.raises(ModelFormatError, match="zeros should be float16"):
        QuantTensor.from_parts(4, t.qweight, t.scales, t.zeros[:, :4], "x")
    with pytest.raises(ModelFormatError, match="qweight should be"):
        QuantTensor.from_parts(4, t.qweight.view(torch.int8), t.scales, None, "x")
    with pytest.raises(ModelFormatError, match="2-D"):
        QuantTensor.from_parts(8, t.qweight.flatten(), t.scales, None, "x")


CASES = [(8, None, True), (8, 32, True), (4, 32, True), (4, 64, False), (4, 128, False)]


@pytest.mark.parametrize("name", sorted(KERNELS))
@pytest.mark.parametrize("bits,group,symmetric", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 7])
def test_kernels_match_the_reference(name, bits, group, symmetric, dtype, rows):
    w = weight(96, 256)
    t = quantize(w, bits, group or 256, symmetric)
    bias = torch.randn(96) * 0.1
    m = QuantLinear(t, bias.clone())
    m.kernels = kernels_named(name)
    m.kernels.prepare(m)
    ref = QuantLinear(t, bias.clone())
    ref.kernels = ReferenceKernels()
    x = torch.randn(2, rows, 256, generator=torch.Generator().manual_seed(1)).to(dtype)
    got, want = m(x), ref(x)
    assert got.shape == (2, rows, 96) and got.dtype == dtype
    # The reference multiplies in float32; bf16 kernels round inputs and products, and the compiled
    # kernels round activations to int8 per block of 32 (test_kernels.py checks that exactly).
    tol = 1e-4 if dtype == torch.float32 and name != "compiled" else 3e-2
    scale = want.float().abs().max()
    assert ((got.float() - want.float()).abs().max() / scale) <= tol


def test_unknown_kernels_are_refused():
    with pytest.raises(OndolError, match="Unknown kernels"):
        kernels_named("fast")


def test_large_weights_quantize_in_row_chunks_to_the_same_result():
    w = weight(300, 64)
    whole = quantize(w, 4, 32, False, rows=10_000)
    chunked = quantize(w, 4, 32, False, rows=64)
    for a, b in zip((whole.qweight, whole.scales, whole.zeros), (chunked.qweight, chunked.scales, chunked.zeros)):
        assert torch.equal(a, b)


def test_q8_0_blocks_are_the_same_numbers():
    w = (np.random.default_rng(0).standard_normal((4, 512)) * 0.05).astype(np.float32)
    raw = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0)
    t = quant_tensor(raw, gguf.GGMLQuantizationType.Q8_0, w.shape, "w")
    assert (t.bits, t.group) == (8, 32)
    assert torch.equal(t.dequantize(), torch.from_numpy(gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q8_0)))


def test_specs_describe_themselves_for_people():
    assert QuantSpec.named("int4").describe() == "int4, groups of 64 with zeros"
    assert QuantSpec.named("int4", 32, symmetric=True).describe() == "int4, groups of 32"
    assert QuantSpec.named("int8").describe() == "int8, one scale per row"
