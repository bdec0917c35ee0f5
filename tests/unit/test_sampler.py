import math

import pytest
import numpy as np
import torch

from ondol.constrained.bitmask import apply_bitmask_reference
from ondol.engine.sampler import (SamplingParams, apply_logit_bias, apply_penalties, draw, logprobs_of, min_p, sample,
                                  sample_allowed, top_k, top_p)
from ondol.errors import InvalidRequestError

PROBS = torch.tensor([0.5, 0.3, 0.15, 0.05])
LOGITS = PROBS.log()


def kept(logits):
    return torch.isfinite(logits).nonzero().flatten().tolist()


def test_top_k_keeps_the_k_most_likely():
    assert kept(top_k(LOGITS, 2)) == [0, 1]
    assert kept(top_k(LOGITS, 0)) == [0, 1, 2, 3]
    assert kept(top_k(LOGITS, -1)) == [0, 1, 2, 3]


@pytest.mark.parametrize("p, expected", [(0.5, [0]), (0.7, [0, 1]), (0.8, [0, 1]), (0.81, [0, 1, 2]), (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_smallest_set_reaching_p(p, expected):
    shuffled = torch.tensor([2, 0, 3, 1])  # order must not matter
    out = top_p(LOGITS[shuffled], p)
    assert sorted(shuffled[kept(out)].tolist()) == expected


def test_min_p_is_relative_to_the_top_token():
    assert kept(min_p(LOGITS, 0.5)) == [0, 1]  # 0.5 * 0.5 = 0.25 threshold
    assert kept(min_p(LOGITS, 0.0)) == [0, 1, 2, 3]


def test_penalties():
    logits = torch.tensor([2.0, -2.0, 1.0, 1.0])
    seen = torch.tensor([True, True, False, True])
    counts = torch.tensor([0.0, 0.0, 0.0, 3.0])
    out = apply_penalties(logits, SamplingParams(repetition_penalty=2.0), seen, counts)
    assert out.tolist() == [1.0, -4.0, 1.0, 0.5]
    out = apply_penalties(logits, SamplingParams(frequency_penalty=0.5, presence_penalty=0.25), seen, counts)
    assert out.tolist() == [2.0, -2.0, 1.0, 1.0 - 1.5 - 0.25]


def test_greedy_is_argmax():
    assert sample(torch.tensor([0.1, 3.0, 2.9]), SamplingParams(temperature=0), None) == 1


def test_same_seed_same_tokens_and_different_seeds_differ():
    logits = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    params = SamplingParams(temperature=1.0)

    def draw(seed):
        g = torch.Generator().manual_seed(seed)
        return [sample(logits, params, g) for _ in range(50)]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_draws_follow_the_tempered_distribution():
    g = torch.Generator().manual_seed(0)
    params = SamplingParams(temperature=0.5)
    n = 20000
    counts = torch.bincount(torch.tensor([sample(LOGITS, params, g) for _ in range(n)]), minlength=4)
    expected = (LOGITS / 0.5).softmax(-1)
    assert torch.allclose(counts / n, expected, atol=0.015)


def test_inverse_cdf_draw_matches_multinomial():
    # The fast draw against torch.multinomial, the plain reference, on a skewed distribution with
    # zero-probability tokens at both ends and in the middle (those must never come out).
    probs = torch.tensor([0.0, 0.05, 0.0, 0.3, 0.001, 0.0, 0.649, 0.0])
    g, ref_g = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    n = 40000
    fast = torch.bincount(torch.tensor([draw(probs, g) for _ in range(n)]), minlength=8) / n
    ref = torch.bincount(torch.multinomial(probs, n, replacement=True, generator=ref_g), minlength=8) / n
    assert torch.allclose(fast, probs, atol=0.01) and torch.allclose(fast, ref, atol=0.012)
    assert fast[probs == 0].sum() == 0
    assert draw(torch.tensor([0.0, 0.0, 1.0]), g) == 2


@pytest.mark.parametrize("n_allowed", [3, 900])  # the subset path and the masked-in-place path
@pytest.mark.parametrize("params", [SamplingParams(temperature=0), SamplingParams(temperature=0.7),
                                    SamplingParams(temperature=1.0, top_k=2), SamplingParams(temperature=1.3, top_p=0.5),
                                    SamplingParams(temperature=1.0, min_p=0.3)])
def test_sampling_under_a_mask_is_the_masked_distribution(n_allowed, params):
    # Reference: set disallowed logits to -inf (apply_bitmask_reference) and sample normally.
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(1000, generator=g) * 3
    allowed = np.zeros(1000, dtype=bool)
    allowed[torch.randperm(1000, generator=g)[:n_allowed].numpy()] = True
    padded = np.concatenate([allowed, np.zeros(24, dtype=bool)])  # to whole 32-bit words
    row = torch.from_numpy(np.packbits(padded, bitorder="little").view(np.int32).copy())
    masked = apply_bitmask_reference(logits, row)
    n = 1 if params.greedy else 6000
    got = [sample_allowed(logits, allowed, params, g) for _ in range(n)]
    want = [sample(masked, params, g) for _ in range(n)]
    assert all(allowed[t] for t in got)
    hist = lambda xs: torch.bincount(torch.tensor(xs), minlength=1000).float() / n
    assert torch.allclose(hist(got), hist(want), atol=0.03)


def test_logprobs_are_the_raw_distribution():
    lp, top = logprobs_of(LOGITS, 2, 2)
    assert math.isclose(lp, math.log(0.15), rel_tol=1e-5)
    assert [t for t, _ in top] == [0, 1]
    assert math.isclose(top[0][1], math.log(0.5), rel_tol=1e-5)
    assert logprobs_of(LOGITS, 2, 0)[1] == []


@pytest.mark.parametrize("kwargs", [dict(temperature=-1), dict(top_p=0), dict(top_p=1.5), dict(min_p=2),
                                    dict(max_tokens=0), dict(repetition_penalty=0), dict(repetition_penalty=1e-300), dict(presence_penalty=3),
                                    dict(logprobs=21), dict(top_k=-2), dict(stop=[""]),
                                    dict(logit_bias={5: 101})])
def test_invalid_params_are_rejected(kwargs):
    with pytest.raises(InvalidRequestError, match="Invalid sampling parameters"):
        SamplingParams(**kwargs)


def test_stop_accepts_a_single_string():
    assert SamplingParams(stop="\n").stop == ("\n",)


@pytest.mark.parametrize("logits", [torch.tensor([1e38, -1e38, 3.0]), torch.tensor([float("inf"), 0.0, 1.0]),
                                    torch.tensor([float("-inf")] * 3)])
@pytest.mark.parametrize("temperature", [1e-300, 1e-3, 1.0, 2.0])
def test_sampling_never_fails(logits, temperature):
    token = sample(logits, SamplingParams(temperature=temperature, top_p=0.5), torch.Generator().manual_seed(0))
    assert 0 <= token < 3


def test_tiny_temperature_is_greedy():
    assert SamplingParams(temperature=1e-6).greedy and not SamplingParams(temperature=1e-4).greedy


def test_logit_bias_bans_and_forces():
    params = SamplingParams(temperature=0, logit_bias={0: -100})
    assert params.logit_bias == ((0, -100.0),) and hash(params)
    assert sample(apply_logit_bias(LOGITS, params), params, None) == 1  # the top token is banned
    forced = SamplingParams(temperature=1.0, logit_bias={3: 100})
    g = torch.Generator().manual_seed(0)
    assert {sample(apply_logit_bias(LOGITS, forced), forced, g) for _ in range(50)} == {3}
    assert torch.equal(apply_logit_bias(LOGITS, SamplingParams()), LOGITS)
