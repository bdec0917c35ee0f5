"""ondol's compiled CPU kernels against their plain-PyTorch counterparts. On a CPU without AVX-512
BF16/VNNI they are skipped; where the CPU has them they must build."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ondol.quant import build
from ondol.quant.formats import quantize
from ondol.quant.kernels import CompiledKernels, ReferenceKernels, int8_activations_reference
from ondol.quant.modules import KernelLinear, QuantLinear

if missing := [f for f in build.NEEDED_FLAGS if f not in build.cpu_flags()]:
    pytest.skip(f"this CPU lacks {', '.join(missing)}", allow_module_level=True)


@pytest.fixture(scope="module")
def compiled():
    return CompiledKernels(quiet=True)  # builds here on a fresh machine: a failure is a failure


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def module(bits: int, group: int, symmetric: bool, n: int, k: int, kernels, bias: bool = False) -> QuantLinear:
    w = torch.randn(n, k, generator=gen(n * k + group)) * 0.05
    m = QuantLinear(quantize(w, bits, group, symmetric), torch.randn(n, generator=gen(1)) if bias else None)
    m.kernels = kernels
    kernels.prepare(m)
    return m


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want.float()).abs().max() / want.float().abs().max()).item()


def test_the_kernels_run_on_all_of_torchs_threads(compiled):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # a one-core machine would otherwise test nothing
        assert torch.ops.ondol.parallel_threads() == 2
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("rows", [1, 3, 16])
@pytest.mark.parametrize("n,k", [(1, 64), (5, 96), (67, 2048), (8, 48)])
def test_bf16_rows_match_float32_math(compiled, rows, n, k):
    m = torch.nn.Linear(k, n, bias=True).to(torch.bfloat16)
    m.__class__ = KernelLinear
    m.kernels = compiled
    x = torch.randn(rows, k, generator=gen(2)).to(torch.bfloat16)
    with torch.inference_mode():
        got = m(x)
    want = F.linear(x.float(), m.weight.float(), m.bias.float())
    assert got.dtype == torch.bfloat16 and got.shape == (rows, n)
    assert rel_err(got, want) < 1e-2  # the output is rounded to bf16 once


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("group,k", [(16, 256), (32, 256), (64, 256), (128, 512), (192, 384), (None, 320), (None, 2048), (32, 96), (16, 48)])  # K % 64 != 0: the float32 loop
@pytest.mark.parametrize("rows", [1, 5, 40])
def test_int8_matches_the_reference(compiled, dtype, group, k, rows):
    m = module(8, group or k, True, 37, k, compiled, bias=True)
    x = torch.randn(rows, k, generator=gen(3)).to(dtype)
    got = m(x)
    assert got.dtype == dtype and got.shape == (rows, 37)
    g = group or k
    integer = k % 64 == 0 and (g in (16, 32) or g % 64 == 0)  # activations rounded to int8, as llama.cpp's Q8_0
    if rows <= CompiledKernels.DECODE_ROWS and dtype == torch.float32:
        want = int8_activations_reference(m, x) if integer else ReferenceKernels().linear(m, x)
        assert rel_err(got, want) < 1e-5
    assert rel_err(got, ReferenceKernels().linear(m, x)) < 2e-2


@pytest.mark.parametrize("group,symmetric", [(32, True), (32, False), (64, False), (128, False), (128, True)])
@pytest.mark.parametrize("k", [128, 384, 2048, 160 * 4])
@pytest.mark.parametrize("rows", [1, 4, 17])
def test_int4_is_exactly_its_arithmetic_and_close_to_the_weights(compiled, group, symmetric, k, rows):
    if k % group:
        pytest.skip("group does not divide k")
    m = module(4, group, symmetric, 45, k, compiled)
    x = torch.randn(rows, k, generator=gen(4)).to(torch.float32)
    got = m(x)
    if rows <= CompiledKernels.DECODE_ROWS:
        # int8 activations: the same numbers as the PyTorch statement of that arithmetic
        assert rel_err(got, int8_activations_reference(m, x)) < 1e-5
    # and within activation rounding of the exact product
    assert rel_err(got, ReferenceKernels().linear(m, x)) < 2e-2


def test_tail_blocks_of_a_partial_chunk_are_read_and_nothing_past_them(compiled):
    # k = 160: one full chunk of 128 inputs and one block of 32, on the last row of the buffer
    m = module(4, 32, False, 3, 160, compiled)
    x = torch.randn(1, 160, generator=gen(5))
    assert rel_err(m(x), int8_activations_reference(m, x)) < 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("bits,group,symmetric", [(8, 32, True), (8, 16, True), (4, 32, True), (4, 64, False)])
def test_dequantize_for_prefill_is_the_reference(compiled, bits, group, symmetric, dtype):
    m = module(bits, group, symmetric, 24, 256, compiled)
    out = torch.empty(24 * 256, dtype=dtype)
    torch.ops.ondol.dequantize(m.qweight, m.scales, m.zeros, bits, group, out)
    want = m.tensor().dequantize(torch.float32)
    assert rel_err(out.view(24, 256), want) < (4e-3 if dtype == torch.bfloat16 else 1e-6)  # bf16: each weight rounded


@pytest.mark.parametrize("bias", [False, True])
def test_prefill_of_many_rows_is_the_float32_product(compiled, bias):
    m = torch.nn.Linear(256, 40, bias=bias).to(torch.bfloat16)
    m.__class__ = KernelLinear
    m.kernels = compiled
    q = module(4, 64, False, 40, 256, compiled, bias=bias)
    x = torch.randn(2, 30, 256, generator=gen(6)).to(torch.bfloat16)  # 60 rows: the GEMM path
    with torch.inference_mode():
        dense, quant = m(x), q(x)
    assert dense.dtype == quant.dtype == torch.bfloat16 and dense.shape == quant.shape == (2, 30, 40)
    want = F.linear(x.float(), m.weight.float(), None if m.bias is None else m.bias.float())
    assert rel_err(dense, want) < 4e-3  # the output rounded to bf16 once
    assert rel_err(quant, ReferenceKernels().linear(q, x).float()) < 4e-3


def test_a_bad_call_is_an_error_not_a_crash(compiled):
    m = module(4, 32, True, 8, 64, compiled)
    with pytest.raises(RuntimeError, match="x must be contiguous"):
        torch.ops.ondol.int4_linear(torch.randn(1, 32), m.qweight, m.scales, None, 32)
    with pytest.raises(RuntimeError, match="scales must be"):
        torch.ops.ondol.int4_linear(torch.randn(1, 64), m.qweight, m.scales[:4], None, 32)
