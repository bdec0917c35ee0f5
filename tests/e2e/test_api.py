"""The Python API end to end on a tiny real checkpoint (random weights, trained tokenizer)."""

import pytest
import torch
from transformers import AutoTokenizer

from ondol import LLM, SamplingParams
from ondol.errors import InvalidRequestError, OndolError


@pytest.fixture(scope="module")
def llm(tiny_model_dir):
    return LLM(tiny_model_dir)


def test_generate_returns_text_ids_and_reason(llm):
    out = llm.generate("거실 에어컨 24도로 맞춰줘", SamplingParams(max_tokens=12, temperature=0, ignore_eos=True))
    assert len(out.token_ids) == 12 and out.finish_reason == "length"
    assert out.text == llm.tokenizer.decode(out.token_ids)
    assert out.prompt_token_ids == llm.tokenizer.encode("거실 에어컨 24도로 맞춰줘")


def test_same_seed_same_output_and_seeds_differ(llm):
    def run(seed):
        return llm.generate("turn off", SamplingParams(max_tokens=24, temperature=1.0, seed=seed, ignore_eos=True)).token_ids

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_batch_in_batch_out_equal_to_solo(llm):
    prompts = ["turn off all the bedroom lights", "침실 불 다 꺼 줘", [5, 6, 7]]
    params = SamplingParams(max_tokens=8, temperature=0, ignore_eos=True)
    outs = llm.generate(prompts, params)
    assert isinstance(outs, list) and len(outs) == 3
    assert [o.token_ids for o in outs] == [llm.generate(p, params).token_ids for p in prompts]


def test_stream_pieces_join_to_the_full_text(llm):
    params = SamplingParams(max_tokens=48, temperature=1.0, seed=11, ignore_eos=True)
    gen = llm.stream("🎉 거실", params)
    pieces = list(gen)
    assert "".join(pieces) == gen.completion.text == llm.generate("🎉 거실", params).text
    assert all(pieces)


def test_stop_string_cuts_before_it_in_text_and_stream(llm):
    params = SamplingParams(max_tokens=40, temperature=0, ignore_eos=True)
    full = llm.generate("hello", params).text
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    assert len(stop) == 3
    cut = SamplingParams(max_tokens=40, temperature=0, ignore_eos=True, stop=[stop, "never-there"])
    out = llm.generate("hello", cut)
    assert out.finish_reason == "stop"
    assert out.text == full[: full.index(stop)]
    gen = llm.stream("hello", cut)
    pieces = list(gen)
    assert "".join(pieces) == out.text and not any(stop in p for p in pieces)


def test_stop_token_ids_and_model_end_tokens(llm):
    params = SamplingParams(max_tokens=20, temperature=0, ignore_eos=True)
    ids = llm.generate("hello", params).token_ids
    target = ids[6]
    out = llm.generate("hello", SamplingParams(max_tokens=20, temperature=0, stop_token_ids=[target]))
    assert out.finish_reason == "stop" and out.token_ids == ids[: ids.index(target)]
    # Both of the checkpoint's end ids (generation_config lists two) end generation.
    assert len(llm.tokenizer.eos_token_ids) >= 2


def test_logprobs_with_alternatives(llm):
    out = llm.generate("hi", SamplingParams(max_tokens=5, temperature=0, logprobs=3, ignore_eos=True))
    assert len(out.logprobs) == 5
    for tid, lp in zip(out.token_ids, out.logprobs):
        assert lp.token_id == tid and lp.logprob <= 0 and len(lp.top) == 3
        assert lp.top[0][0] == tid and lp.top[0][1] == pytest.approx(lp.logprob)  # greedy picks the top
        assert [v for _, v in lp.top] == sorted((v for _, v in lp.top), reverse=True)


def test_chat_uses_the_template_like_transformers(llm, tiny_model_dir):
    messages = [{"role": "system", "content": "너는 집 도우미야."}, {"role": "user", "content": "거실 불 켜줘"}]
    expected = AutoTokenizer.from_pretrained(tiny_model_dir).apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert llm.chat_prompt(messages) == list(expected)
    out = llm.chat(messages, SamplingParams(max_tokens=4, temperature=0, ignore_eos=True))
    assert out.prompt_token_ids == list(expected)
    assert "".join(llm.stream(messages, SamplingParams(max_tokens=4, temperature=0, ignore_eos=True))) == out.text


def test_context_limits(tiny_model_dir):
    small = LLM(tiny_model_dir, max_model_len=16)
    with pytest.raises(InvalidRequestError, match="the context holds 16"):
        small.generate(list(range(20)), SamplingParams(max_tokens=1))
    out = small.generate(list(range(10)), SamplingParams(temperature=0, ignore_eos=True))
    assert out.finish_reason == "length" and len(out.token_ids) == 6  # stops when the context is full
    with pytest.raises(InvalidRequestError, match="empty"):
        small.generate([], SamplingParams(max_tokens=1))
    with pytest.raises(InvalidRequestError, match="outside the vocabulary"):
        small.generate([10**7], SamplingParams(max_tokens=1))
    with pytest.raises(InvalidRequestError):
        LLM(tiny_model_dir, max_model_len=10**9)


def test_default_params_come_from_generation_config(tiny_model_dir, tmp_path):
    import json
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    gen = json.loads((folder / "generation_config.json").read_text())
    gen |= {"do_sample": True, "temperature": 0.6, "top_p": 0.9, "top_k": 50}
    (folder / "generation_config.json").write_text(json.dumps(gen))
    p = LLM(folder).default_sampling_params()
    assert (p.temperature, p.top_p, p.top_k) == (0.6, 0.9, 50)


def test_bf16_runtime_generates(tiny_model_dir):
    llm = LLM(tiny_model_dir, dtype="bfloat16")
    assert llm.model.dtype == torch.bfloat16
    out = llm.generate("hi", SamplingParams(max_tokens=4, temperature=0, ignore_eos=True))
    assert len(out.token_ids) == 4


def test_errors_are_ondol_errors(tmp_path):
    with pytest.raises(OndolError, match="does not exist"):
        LLM(tmp_path / "nope")


def test_loading_with_a_progress_bar(tiny_model_dir, capsys):
    llm = LLM(tiny_model_dir, progress=True)
    assert llm.generate("hi", SamplingParams(max_tokens=2, temperature=0, ignore_eos=True)).token_ids
