"""The property behind response_format: whatever the schema (from the supported subset), the seed and
the temperature, a random-weight model's output parses and validates with ``jsonschema``.

A random model left to itself never writes JSON, so every valid document here is the grammar's
doing. Schemas bound every string, array and number (tests/schema_generator.py), so each output
ends within max_tokens; an output cut by max_tokens would fail the test, not be skipped."""

import json
import random

import jsonschema
import pytest

from ondol import LLM, SamplingParams
from ondol.constrained import Grammar
from tests.schema_generator import random_schema

N_SCHEMAS = 500


@pytest.fixture(scope="module")
def llm(tiny_model_dir):
    return LLM(tiny_model_dir, dtype="float32", max_num_seqs=64, max_num_batched_tokens=256)


def test_every_output_validates(llm):
    rng = random.Random(20261123)
    prompts = ["거실 에어컨 24도로 맞춰줘", "turn off all the bedroom lights", "{", "JSON:", "🎉"]
    jobs = []
    for _ in range(N_SCHEMAS):
        schema = random_schema(rng)
        params = SamplingParams(max_tokens=400, seed=rng.randrange(1 << 32), temperature=rng.choice([0, 0.5, 1.0, 1.5]),
                                top_p=rng.choice([1.0, 1.0, 0.9]), grammar=Grammar.json_schema(schema))
        jobs.append((schema, llm.encode(rng.choice(prompts)), params))
    reqs = [llm.engine.add_request(ids, params) for _, ids, params in jobs]
    while llm.engine.has_unfinished_requests():
        llm.engine.step()
    failures = []
    for (schema, _, params), req in zip(jobs, reqs):
        out = req.output
        try:
            assert out.finish_reason == "stop", f"finished with {out.finish_reason}"
            jsonschema.validate(json.loads(out.text), schema)
        except (AssertionError, ValueError, jsonschema.ValidationError) as e:
            failures.append((json.dumps(schema, ensure_ascii=False), params.temperature, out.text, str(e)[:200]))
    assert not failures, f"{len(failures)} of {N_SCHEMAS} outputs invalid; first: {failures[0]}"
    # The schemas are varied enough to mean something: documents of many sizes came out.
    lengths = sorted(len(r.output.token_ids) for r in reqs)
    assert lengths[len(lengths) // 10] < lengths[-len(lengths) // 10]
    print(f"{N_SCHEMAS} documents, tokens: min {lengths[0]}, median {lengths[len(lengths) // 2]}, max {lengths[-1]}")
