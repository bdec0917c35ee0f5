"""The fused decode step (model/fused.py, quant/csrc/decode.cpp) against the Python layers of
llama.py, on every weight format it serves: same logits, same keys and values written."""

from __future__ import annotations

import pytest
import torch

from ondol.engine.kv_cache import PagedKVCache, SeqSpan
from ondol.llm import LLM
from ondol.loaders import load
from ondol.quant import build

pytestmark = pytest.mark.skipif(not build.cpu_flags() >= set(build.NEEDED_FLAGS), reason="needs AVX-512 BF16/VNNI")

BLOCK = 4
PROMPTS = [[5, 77, 140, 9, 33], [18, 61, 7, 90, 3, 250, 12, 40, 41], [99, 100]]


def blocks_of(i: int) -> list[int]:
    return list(range(i * 8, i * 8 + 8))  # 8 blocks of 4 slots each: room for 32 positions


def decode_steps(model, cache, steps: int, fused: bool) -> list[torch.Tensor]:
    """Prefill every prompt (Python layers), then ``steps`` decode steps of all three at once,
    through the fused call or the Python layers. Returns each step's logits [3, V]. The tokens fed
    are fixed, not sampled: a near-tie decided differently by bf16 rounding must not fork the runs."""
    keep, model.fused = model.fused, (model.fused if fused else None)
    try:
        with torch.inference_mode():
            for i, p in enumerate(PROMPTS):
                model(torch.tensor([p]), torch.arange(len(p))[None], cache.step([SeqSpan(blocks_of(i), 0, len(p), 0)]))
            out = []
            lengths = [len(p) for p in PROMPTS]
            for t in range(steps):
                last = [5 + (31 * t + 17 * i) % 200 for i in range(len(PROMPTS))]
                spans = [SeqSpan(blocks_of(i), n, 1, i) for i, n in enumerate(lengths)]
                step = cache.step(spans)
                assert step.decode_only
                logits = model(torch.tensor([last]), torch.tensor([lengths]), step)[0]
                out.append(logits)
                lengths = [n + 1 for n in lengths]
            return out
    finally:
        model.fused = keep


CASES = [("float32", None), ("bfloat16", None), ("float32", "int8"), ("bfloat16", "int8"), ("bfloat16", "int4"),
         ("float32", "int4")]


@pytest.mark.parametrize("shape", ["llama3.2", "gqa", "qwen2"])
@pytest.mark.parametrize("dtype,quant", CASES)
def test_fused_decode_equals_the_python_layers(shape, dtype, quant, checkpoints):
    loaded = load(checkpoints[shape][0], dtype=dtype, progress=False, quant=quant, kernels="compiled")
    model = loaded.model
    assert model.fused is not None, "every linear runs on the compiled kernels: the fused step applies"
    caches = [PagedKVCache(model.config, 3 * 8, BLOCK, model.dtype) for _ in range(2)]
    fused = decode_steps(model, caches[0], 4, fused=True)
    plain = decode_steps(model, caches[1], 4, fused=False)
    # float32 differs only in summation order; bf16 also where a sum lands next to a rounding edge,
    # and int8/int4 where an activation lands next to an edge of its int8 rounding (kernels.py)
    tol = 1e-4 if dtype == "float32" and quant is None else 3e-2
    for a, b in zip(fused, plain):
        scale = b.abs().max()
        assert (a - b).abs().max() <= tol * scale, f"fused step drifts: {(a - b).abs().max() / scale:.2e}"
    # every key and value the steps wrote, in the same slots
    for name in ("k", "v"):
        a, b = getattr(caches[0], name).float(), getattr(caches[1], name).float()
        written = torch.cat([torch.arange(i * 32, i * 32 + len(p) + 4) for i, p in enumerate(PROMPTS)])
        assert torch.allclose(a[:, written], b[:, written], rtol=tol, atol=tol * b[:, written].abs().max())


def test_fused_decode_is_used_only_where_it_applies(checkpoints):
    folder = checkpoints["llama3.2"][0]
    assert load(folder, progress=False, kernels="torch").model.fused is None  # PyTorch's kernels: Python layers
    assert load(folder, progress=False, kernels="reference").model.fused is None
    model = load(folder, dtype="bfloat16", progress=False, kernels="compiled").model
    cache = PagedKVCache(model.config, 8, BLOCK, model.dtype)
    assert not cache.step([SeqSpan([0, 1], 0, 5, 0)]).decode_only  # a prompt chunk
    assert cache.step([SeqSpan([0, 1], 5, 1, 0), SeqSpan([2, 3], 2, 1, 1)]).decode_only
    # a sliding window that cuts keys off needs the masked Python attention
    windowed = load(checkpoints["mistral"][0], progress=False, kernels="compiled").model
    wcache = PagedKVCache(windowed.config, 16, BLOCK, windowed.dtype)
    assert wcache.step([SeqSpan(list(range(8)), 10, 1, 0)]).decode_only
    assert not wcache.step([SeqSpan(list(range(8)), 30, 1, 0)]).decode_only


def test_engine_generates_the_same_tokens_fused_or_not(checkpoints):
    """Four requests batched through the engine: greedy tokens from the fused step and from the
    Python layers agree (float32, where the two differ only in summation order)."""
    llm = LLM(checkpoints["gqa"][0], dtype="float32", progress=False, kernels="compiled")
    assert llm.model.fused is not None
    from ondol.engine.sampler import SamplingParams

    prompts = ["거실 에어컨 24도로 맞춰줘", "turn off the lights", "hello", "침실 불 꺼 줘"]
    params = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True)
    fused = [o.token_ids for o in llm.generate(prompts, params)]
    llm.model.fused = None
    plain = [o.token_ids for o in llm.generate(prompts, params)]
    assert fused == plain
