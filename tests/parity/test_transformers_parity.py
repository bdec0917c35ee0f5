"""ondol's decoder against transformers' on the same checkpoint files, in float32.

Tolerance: logits within 1e-4 absolute (observed: ~1e-6); greedy tokens identical.
"""

import pytest
import torch

from ondol.engine.kv_cache import ContiguousKVCache
from ondol.engine.sampler import SamplingParams
from ondol.llm import LLM
from tests.model_fixtures import SHAPES

ATOL = 1e-4
PROMPT_LENGTHS = [1, 5, 17, 64]  # 64 > the Mistral shape's sliding window of 24


@pytest.fixture(scope="module")
def llms(checkpoints):
    return {name: LLM(folder, dtype="float32") for name, (folder, _) in checkpoints.items()}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("length", PROMPT_LENGTHS)
def test_logits_match_transformers(checkpoints, llms, shape, length):
    _, ref = checkpoints[shape]
    llm = llms[shape]
    ids = torch.randint(0, llm.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(length))
    with torch.no_grad():
        expected = ref(ids).logits
    cache = ContiguousKVCache(llm.config, 256, torch.float32)
    got = llm.model(ids, torch.arange(length)[None], cache)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_incremental_decode_matches_full_forward(checkpoints, llms, shape):
    """Prefill in two chunks, then one token at a time: the same logits as one full forward."""
    _, ref = checkpoints[shape]
    llm = llms[shape]
    ids = torch.randint(0, llm.config.vocab_size, (1, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref(ids).logits
    cache = ContiguousKVCache(llm.config, 256, torch.float32, capacity=8)  # forces the cache to grow
    parts = [llm.model(ids[:, :20], torch.arange(20)[None], cache),
             llm.model(ids[:, 20:30], torch.arange(20, 30)[None], cache)]
    parts += [llm.model(ids[:, i : i + 1], torch.tensor([[i]]), cache) for i in range(30, 48)]
    torch.testing.assert_close(torch.cat(parts, dim=1), expected, atol=ATOL, rtol=0)


def _greedy_without_cache(model, ids, steps):
    """The reference: every step recomputes the whole sequence."""
    seq = ids
    for _ in range(steps):
        with torch.no_grad():
            nxt = model(seq).logits[0, -1].argmax()
        seq = torch.cat([seq, nxt.view(1, 1)], dim=1)
    return seq[0, ids.shape[1]:].tolist()


@pytest.mark.parametrize("shape", list(SHAPES))
def test_greedy_32_tokens_match(checkpoints, llms, shape):
    _, ref = checkpoints[shape]
    llm = llms[shape]
    ids = torch.randint(0, llm.config.vocab_size, (1, 9), generator=torch.Generator().manual_seed(2))
    params = SamplingParams(max_tokens=32, temperature=0, ignore_eos=True)
    ours = llm.generate(ids[0].tolist(), params).token_ids
    assert len(ours) == 32
    assert ours == _greedy_without_cache(ref, ids, 32)
    ref.generation_config.eos_token_id = None
    with torch.no_grad():
        hf_cached = ref.generate(ids, max_new_tokens=32, do_sample=False, pad_token_id=0)[0, 9:].tolist()
    assert ours == hf_cached
    # ondol without its KV cache: a fresh cache and a full forward per step.
    seq = ids[0].tolist()
    for _ in range(32):
        cache = ContiguousKVCache(llm.config, 256, torch.float32)
        seq.append(int(llm.model(torch.tensor([seq]), torch.arange(len(seq))[None], cache)[0, -1].argmax()))
    assert seq[9:] == ours


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_files(tmp_path, dtype):
    """bf16/fp16 files: read as float32 they equal transformers on the same (upcast) weights;
    with dtype "auto" they run in bfloat16."""
    from tests.model_fixtures import make_checkpoint

    from transformers import AutoModelForCausalLM

    make_checkpoint(tmp_path, "gqa", dtype=dtype)
    # The reference reads the same files, upcast (model.to(dtype) would also round its rope buffer).
    ref = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    ids = torch.randint(0, 300, (1, 12), generator=torch.Generator().manual_seed(3))
    ours = LLM(tmp_path, dtype="float32")
    with torch.no_grad():
        expected = ref(ids).logits
    got = ours.model(ids, torch.arange(12)[None], ContiguousKVCache(ours.config, 16, torch.float32))
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    auto = LLM(tmp_path)
    assert auto.model.dtype == torch.bfloat16
    low = auto.model(ids, torch.arange(12)[None], ContiguousKVCache(auto.config, 16, torch.bfloat16))
    assert (low - expected).abs().max() < 0.1 * expected.abs().max()  # bf16 compute stays close


def test_sharded_checkpoint_equals_single_file(tmp_path, checkpoints):
    folder, ref = checkpoints["gqa"]
    ref.save_pretrained(tmp_path, max_shard_size="100KB")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / f).write_bytes((folder / f).read_bytes())
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert len(list(tmp_path.glob("*.safetensors"))) > 3
    a, b = LLM(tmp_path, dtype="float32"), LLM(folder, dtype="float32")
    for (n1, p1), (n2, p2) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)


def test_older_rope_scaling_spelling_loads_identically(tmp_path, checkpoints):
    """Published Llama 3.x config.json files spell rope settings as rope_scaling + rope_theta."""
    import json
    import shutil

    folder, ref = checkpoints["llama3.2"]
    shutil.copytree(folder, tmp_path / "old")
    cfg = json.loads((tmp_path / "old" / "config.json").read_text())
    params = cfg.pop("rope_parameters")
    cfg["rope_theta"] = params.pop("rope_theta")
    cfg["rope_scaling"] = params
    (tmp_path / "old" / "config.json").write_text(json.dumps(cfg))
    ours = LLM(tmp_path / "old", dtype="float32")
    ids = torch.randint(0, 300, (1, 100), generator=torch.Generator().manual_seed(4))  # past original_max_position 64
    with torch.no_grad():
        expected = ref(ids).logits
    got = ours.model(ids, torch.arange(100)[None], ContiguousKVCache(ours.config, 128, torch.float32))
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
