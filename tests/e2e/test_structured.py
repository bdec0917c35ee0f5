"""Grammar-constrained decoding in the engine: valid output, batches that mix grammars, preemption,
lazy grammars, compile cache and errors. Random-weight models would almost never write valid JSON
by themselves, so everything valid here is the grammar's doing."""

import json

import jsonschema
import pytest
import torch

from ondol import LLM, SamplingParams
from ondol.constrained import Grammar, GrammarCompiler
from ondol.errors import InvalidRequestError

DEVICE = {
    "type": "object",
    "properties": {
        "device": {"enum": ["거실 에어컨", "침실 조명", "living room TV"]},
        "action": {"enum": ["on", "off", "set"]},
        "celsius": {"type": "integer", "minimum": 16, "maximum": 30},
        "note": {"type": "string", "maxLength": 12},
    },
    "required": ["device", "action"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def llm(tiny_model_dir):
    return LLM(tiny_model_dir, dtype="float32", max_num_batched_tokens=64)


def run_together(llm, jobs):
    """Add every (prompt ids, params) to one engine and step until all finish; completions in order."""
    reqs = [llm.engine.add_request(ids, params) for ids, params in jobs]
    while llm.engine.has_unfinished_requests():
        llm.engine.step()
    return [r.output.completion(r.prompt_ids) for r in reqs]


def test_json_schema_output_is_valid_at_every_temperature(llm):
    grammar = Grammar.json_schema(DEVICE)
    for seed in range(6):
        for temperature in (0.0, 0.8, 1.5):
            out = llm.generate("거실 에어컨 24도로 맞춰줘", SamplingParams(
                max_tokens=80, temperature=temperature, seed=seed, grammar=grammar))
            jsonschema.validate(json.loads(out.text), DEVICE)
            # The request ends as soon as the document is complete, with no end token needed.
            assert out.finish_reason == "stop"
            assert llm.tokenizer.decode(out.token_ids) == out.text


def test_json_object_is_any_object(llm):
    for seed in range(4):
        out = llm.generate("hi", SamplingParams(max_tokens=60, temperature=1.0, seed=seed, grammar=Grammar.json_object()))
        if out.finish_reason == "stop":
            assert isinstance(json.loads(out.text), dict)


def test_constrained_and_free_requests_in_one_batch(llm):
    prompt = llm.tokenizer.encode("turn off all the bedroom lights")
    free = [SamplingParams(max_tokens=20, temperature=0.9, seed=s, ignore_eos=True) for s in range(4)]
    shaped = [SamplingParams(max_tokens=80, temperature=0.9, seed=s, grammar=Grammar.json_schema(DEVICE))
              for s in range(4)]
    regex = [SamplingParams(max_tokens=20, temperature=1.2, seed=s, grammar=Grammar.regex(r"(켜|꺼)[.!]"))
             for s in range(2)]
    jobs = [(prompt, p) for pair in zip(free, shaped) for p in pair] + [(prompt, p) for p in regex]
    together = run_together(llm, jobs)
    alone = [run_together(llm, [job])[0] for job in jobs]
    # Each request gets what it asked for, whatever it was batched with: free requests are
    # token-for-token what they are alone, constrained ones valid (and also equal to their solo run).
    for got, solo in zip(together, alone):
        assert got.token_ids == solo.token_ids
    for out, (_, params) in zip(together, jobs):
        if params.grammar is None:
            assert len(out.token_ids) == 20
        elif params.grammar.kind == "json_schema":
            jsonschema.validate(json.loads(out.text), DEVICE)
        else:
            assert out.text in {"켜.", "켜!", "꺼.", "꺼!"}
    assert llm.engine.stats.num_kv_blocks_used == 0


def test_preemption_keeps_the_grammar_state(tiny_model_dir, llm):
    small = LLM(tiny_model_dir, dtype="float32", num_kv_blocks=10, max_model_len=128, enable_prefix_caching=False)
    prompt = llm.tokenizer.encode("거실 에어컨 24도로 맞춰줘 " * 3)
    jobs = [(prompt, SamplingParams(max_tokens=60, temperature=1.0, seed=s, grammar=Grammar.json_schema(DEVICE)))
            for s in range(6)]
    outs = run_together(small, jobs)
    assert small.engine.stats.num_preemptions > 0
    for out, job in zip(outs, jobs):
        jsonschema.validate(json.loads(out.text), DEVICE)
        assert out.token_ids == run_together(llm, [job])[0].token_ids


def test_lazy_grammar_samples_exactly_as_the_masked_one(llm):
    # Sample-first-then-mask must pick what mask-first picks; greedy makes that exact.
    lark = 'start: TEXT | "<call>" %json {"type": "object", "properties": {"on": {"type": "boolean"}}, ' \
           '"required": ["on"], "additionalProperties": false}\nTEXT: /[^<](.|\\n)*/'
    for prompt in ("거실", "turn on", "TV"):
        ids = llm.tokenizer.encode(prompt)
        eager = llm.generate(ids, SamplingParams(max_tokens=24, temperature=0, grammar=Grammar.lark(lark)))
        lazy = llm.generate(ids, SamplingParams(max_tokens=24, temperature=0, grammar=Grammar.lark(lark, lazy=True)))
        assert lazy.token_ids == eager.token_ids
        assert not lazy.text.startswith("<")


def test_banned_tokens_are_never_sampled(llm):
    free = llm.generate("hello", SamplingParams(max_tokens=30, temperature=0, ignore_eos=True))
    banned = tuple(set(free.token_ids))
    out = llm.generate("hello", SamplingParams(max_tokens=30, temperature=0, ignore_eos=True, banned_token_ids=banned))
    assert not set(out.token_ids) & set(banned)


def test_unenforceable_schema_is_refused_before_anything_runs(llm):
    for schema, word in (({"type": "array", "uniqueItems": True}, "uniqueItems"),
                         ({"type": "string", "pattern": "^(?!admin)"}, "look")):
        with pytest.raises(InvalidRequestError, match=word):
            llm.generate("x", SamplingParams(max_tokens=4, grammar=Grammar.json_schema(schema)))
    with pytest.raises(InvalidRequestError, match="not valid JSON"):
        Grammar.json_schema("{not json")
    with pytest.raises(InvalidRequestError):
        llm.generate("x", SamplingParams(grammar=Grammar.lark("start: undefined_rule")))
    assert not llm.engine.has_unfinished_requests()


def test_compiled_grammars_are_cached_per_tokenizer(llm, checkpoints):
    compiler = GrammarCompiler(llm.tokenizer, llm.config.vocab_size)
    first = compiler.compile(Grammar.json_schema(DEVICE))
    assert compiler.compile(Grammar.json_schema(json.loads(json.dumps(DEVICE)))) is first
    assert (compiler.hits, compiler.misses) == (1, 1)
    other = LLM(checkpoints["qwen2"][0], dtype="float32", max_model_len=64)
    assert GrammarCompiler(other.tokenizer, other.config.vocab_size).compile(Grammar.json_schema(DEVICE)) is not first


def test_matcher_rolls_back(llm):
    compiler = GrammarCompiler(llm.tokenizer, llm.config.vocab_size)
    m = compiler.matcher(Grammar.json_schema(DEVICE))
    doc = json.dumps({"device": "거실 에어컨", "action": "set", "celsius": 24}, ensure_ascii=False)
    ids = llm.tokenizer.encode(doc, add_special_tokens=False)
    mask = torch.zeros(1, m.bitmask_words, dtype=torch.int32)
    for t in ids[:5]:
        assert m.accept(t)
    m.fill_bitmask(mask, 0)
    before = mask.clone()
    for t in ids[5:9]:
        assert m.accept(t)
    m.rollback(4)
    m.fill_bitmask(mask, 0)
    assert torch.equal(mask, before)
    assert not m.accept(llm.tokenizer.encode("}", add_special_tokens=False)[0])  # refused, state kept
    for t in ids[5:]:
        assert m.accept(t)
    assert m.is_terminated and m.is_accepting
    with pytest.raises(ValueError):
        m.rollback(len(ids) + 1)


def test_python_chat_api_takes_openai_structure(llm, tool_models):
    fmt = {"type": "json_schema", "json_schema": {"name": "device", "schema": DEVICE, "strict": True}}
    out = llm.chat([{"role": "user", "content": "거실 에어컨 켜줘"}], SamplingParams(max_tokens=80, seed=1), response_format=fmt)
    jsonschema.validate(json.loads(out.content), DEVICE)
    assert out.tool_calls == [] and out.finish_reason == "stop"

    hermes = LLM(tool_models["hermes"], dtype="float32")
    tools = [{"type": "function", "function": {"name": "set_ac", "parameters": {
        "type": "object", "properties": {"room": {"enum": ["거실", "안방"]}, "celsius": {
            "type": "integer", "minimum": 16, "maximum": 30}}, "required": ["room", "celsius"]}}}]
    messages = [{"role": "user", "content": "거실 24도"}]
    call = hermes.chat(messages, SamplingParams(max_tokens=200, seed=2), tools=tools, tool_choice="required",
                       parallel_tool_calls=False)
    assert call.finish_reason == "tool_calls" and call.content is None and len(call.tool_calls) == 1
    assert call.tool_calls[0].name == "set_ac" and json.loads(call.tool_calls[0].arguments)["room"] in ("거실", "안방")
    answer = hermes.chat(messages + [{"role": "assistant", "tool_calls": [{"id": call.tool_calls[0].id, "type": "function",
                                      "function": {"name": "set_ac", "arguments": call.tool_calls[0].arguments}}]},
                                     {"role": "tool", "tool_call_id": call.tool_calls[0].id, "content": "ok"}],
                         SamplingParams(max_tokens=8, seed=3), tools=tools, tool_choice="none")
    assert answer.tool_calls == [] and answer.finish_reason in ("stop", "length")
    with pytest.raises(InvalidRequestError, match="tool"):
        llm.chat(messages, tools=tools)  # the tiny model's template has no tools


def test_self_referential_schemas_are_refused_at_admission(llm):
    for schema in ({"$ref": "#"}, {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}):
        with pytest.raises(InvalidRequestError, match="no finite instance"):
            llm.generate("x", SamplingParams(max_tokens=4, grammar=Grammar.json_schema(schema)))
    assert not llm.engine.has_unfinished_requests()


def test_a_grammar_that_dead_ends_at_once_is_refused_by_the_probe(llm, monkeypatch):
    import ondol.constrained.grammar as grammar_module

    monkeypatch.setattr(grammar_module, "check_schema", lambda schema: None)  # let it reach llguidance
    compiler = GrammarCompiler(llm.tokenizer, llm.config.vocab_size)
    with pytest.raises(InvalidRequestError, match="allows no output"):
        compiler.compile(Grammar.json_schema({"$ref": "#"}))


def test_a_bug_in_one_request_finishes_it_alone(llm):
    """An exception while sampling one request (here its grammar raises) ends that request with
    finish reason "error"; the request beside it in the batch gives exactly its solo output."""
    prompt = llm.encode("거실 에어컨 24도로 맞춰줘")
    params = SamplingParams(max_tokens=12, temperature=0.8, seed=3, ignore_eos=True)
    solo = llm.engine.generate([prompt], params)[0]
    victim = llm.engine.add_request(prompt, params)
    broken = llm.engine.add_request(prompt, SamplingParams(max_tokens=12, grammar=Grammar.json_object()))

    def explode(*_args):
        raise RuntimeError("grammar exploded")

    broken.grammar.fill_bitmask = explode
    failures = []
    while llm.engine.has_unfinished_requests():
        failures += [o for o in llm.engine.step() if o.finish_reason == "error"]
    assert [o.request_id for o in failures] == [broken.request_id]
    assert "grammar exploded" in failures[0].error and broken.finished
    assert victim.output.completion(victim.prompt_ids).token_ids == solo.token_ids
    assert llm.engine.pool.num_used == 0 or llm.engine.stats.num_running == 0
