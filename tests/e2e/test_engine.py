"""The continuous-batching engine: outputs do not depend on the batch, blocks always return.

Reference: ondol's plain contiguous-cache decode (tests/parity checks that one against transformers).
"""

import pytest
import torch

from ondol import LLM, SamplingParams
from ondol.engine.kv_cache import ContiguousKVCache


def contiguous_greedy(llm, prompt, n):
    """The plain reference: one sequence, contiguous cache, argmax."""
    cache = ContiguousKVCache(llm.config, len(prompt) + n, llm.model.dtype)
    logits = llm.model(torch.tensor([prompt]), torch.arange(len(prompt))[None], cache)
    out = []
    for i in range(n):
        out.append(int(logits[0, -1].argmax()))
        pos = len(prompt) + i
        logits = llm.model(torch.tensor([[out[-1]]]), torch.tensor([[pos]]), cache)
    return out


def prompts(n, seed=0, vocab=400):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 120, (n,), generator=g).tolist()
    return [torch.randint(0, vocab, (k,), generator=g).tolist() for k in lengths]


@pytest.fixture(scope="module")
def llm(tiny_model_dir):
    # A small token budget forces chunked prefill mixed with decoding.
    return LLM(tiny_model_dir, dtype="float32", max_num_batched_tokens=48)


def test_32_concurrent_requests_equal_their_solo_runs(llm):
    ps = prompts(32)
    greedy = SamplingParams(max_tokens=24, temperature=0, ignore_eos=True)
    outs = llm.generate(ps, greedy)
    for p, o in zip(ps, outs):
        assert o.token_ids == contiguous_greedy(llm, p, 24)
    assert llm.engine.stats.num_kv_blocks_used == 0 and not llm.engine.has_unfinished_requests()


def test_mixed_sampling_parameters_in_one_batch_equal_solo(llm):
    ps = prompts(12, seed=1)
    params = [SamplingParams(max_tokens=16, temperature=t, top_p=tp, seed=s, ignore_eos=True,
                             repetition_penalty=rp, presence_penalty=pp)
              for t, tp, s, rp, pp in zip([0, 0.7, 1.0, 1.3] * 3, [1, 0.9, 0.8, 1] * 3, range(12),
                                          [1, 1.2, 1, 1] * 3, [0, 0, 0.5, 0] * 3)]
    engine = llm.engine
    reqs = [engine.add_request(p, sp) for p, sp in zip(ps, params)]
    while engine.has_unfinished_requests():
        engine.step()
    batched = [r.output.token_ids for r in reqs]
    solo = [llm.generate(p, sp).token_ids for p, sp in zip(ps, params)]
    assert batched == solo


def test_preemption_recomputes_without_changing_outputs(tiny_model_dir):
    # 12 blocks of 16 tokens: room for about two of these requests at a time.
    small = LLM(tiny_model_dir, dtype="float32", num_kv_blocks=12, max_model_len=192, enable_prefix_caching=False)
    ps = prompts(8, seed=2)
    params = SamplingParams(max_tokens=40, temperature=0.9, seed=5, ignore_eos=True)
    outs = small.generate(ps, params)
    assert small.engine.stats.num_preemptions > 0
    assert [o.token_ids for o in outs] == [small.generate(p, params).token_ids for p in ps]
    assert small.engine.stats.num_kv_blocks_used == 0


def test_prefix_cache_computes_only_new_tokens(tiny_model_dir):
    cached = LLM(tiny_model_dir, dtype="float32")
    plain = LLM(tiny_model_dir, dtype="float32", enable_prefix_caching=False)
    system = prompts(1, seed=3)[0] * 3  # a long shared prefix, like a home's device list
    system = system[:100] + [1] * max(0, 100 - len(system))
    a, b = system + [5, 6, 7], system + [8, 9, 10, 11]
    params = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
    first = cached.generate(a, params)
    before = cached.engine.stats
    second = cached.generate(b, params)
    after = cached.engine.stats
    shared_blocks = 96  # 6 full blocks of 16 tokens of the common 100
    # Only the new prompt tokens, plus one decode token per further output token, are computed.
    assert after.num_computed_tokens - before.num_computed_tokens == (len(b) - shared_blocks) + 5
    assert after.prefix_cache_hits - before.prefix_cache_hits == shared_blocks
    assert second.token_ids == plain.generate(b, params).token_ids
    assert first.token_ids == plain.generate(a, params).token_ids


def test_aborted_requests_free_everything(llm):
    engine = llm.engine
    reqs = [engine.add_request(p, SamplingParams(max_tokens=50, ignore_eos=True)) for p in prompts(20, seed=4)]
    for _ in range(5):
        engine.step()
    assert engine.stats.num_kv_blocks_used > 0
    for r in reqs:
        engine.abort_request(r.request_id)
    s = engine.stats
    assert (s.num_kv_blocks_used, s.num_running, s.num_waiting) == (0, 0, 0)


def test_stream_stopped_early_aborts(llm):
    gen = llm.stream([1, 2, 3], SamplingParams(max_tokens=100, temperature=0, ignore_eos=True))
    it = iter(gen)
    next(it)
    it.close()
    assert llm.engine.stats.num_kv_blocks_used == 0 and not llm.engine.has_unfinished_requests()


def test_never_written_cache_memory_is_never_read(tiny_model_dir):
    """The block pool is uninitialised memory: poison it with NaN and outputs must not change."""
    llm = LLM(tiny_model_dir, dtype="float32", num_kv_blocks=64, max_model_len=256, enable_prefix_caching=False)
    ps = prompts(6, seed=7)  # different lengths: decode batches are padded
    params = SamplingParams(max_tokens=10, temperature=0, ignore_eos=True)
    clean = [o.token_ids for o in llm.generate(ps, params)]
    llm.engine.kv.k.fill_(float("nan"))
    llm.engine.kv.v.fill_(float("nan"))
    assert [o.token_ids for o in llm.generate(ps, params)] == clean


def test_logit_bias_outside_the_vocabulary_is_rejected(llm):
    from ondol.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="logit_bias names token"):
        llm.engine.add_request([1, 2], SamplingParams(logit_bias={10**6: 5}))
    assert not llm.engine.has_unfinished_requests()
