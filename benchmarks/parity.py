"""Largest logit difference between ondol and transformers on the test shapes, in float32.

    PYTHONPATH=. .venv/bin/python -m benchmarks.parity

Builds each tiny checkpoint of tests/model_fixtures.py, runs prompts of 1 to 200 tokens through both
in one forward and through ondol's KV cache (prefill of half, then one token at a time).
"""

import tempfile
from pathlib import Path

import torch

from ondol import LLM
from ondol.engine.kv_cache import ContiguousKVCache
from tests.model_fixtures import SHAPES, make_checkpoint


def main() -> None:
    root = Path(tempfile.mkdtemp())
    print("| shape | max abs Δlogit, one forward | max abs Δlogit, through the KV cache | max abs logit |")
    print("|---|---|---|---|")
    for name in SHAPES:
        ref = make_checkpoint(root / name, name)
        llm = LLM(root / name, dtype="float32")
        full = incr = scale = 0.0
        for n in (1, 5, 17, 64, 200):
            ids = torch.randint(0, llm.config.vocab_size, (1, n), generator=torch.Generator().manual_seed(n))
            with torch.no_grad():
                expected = ref(ids).logits
            got = llm.model(ids, torch.arange(n)[None], ContiguousKVCache(llm.config, 256, torch.float32))
            cache = ContiguousKVCache(llm.config, 256, torch.float32)
            h = max(n // 2, 1)
            parts = [llm.model(ids[:, :h], torch.arange(h)[None], cache)]
            parts += [llm.model(ids[:, i : i + 1], torch.tensor([[i]]), cache) for i in range(h, n)]
            full = max(full, (got - expected).abs().max().item())
            incr = max(incr, (torch.cat(parts, 1) - expected).abs().max().item())
            scale = max(scale, expected.abs().max().item())
        print(f"| {name} | {full:.1e} | {incr:.1e} | {scale:.1f} |")


if __name__ == "__main__":
    main()
