"""Self-check of tests/schema_generator.py: its schemas are valid, compile, and every document a
random-token walk through their grammar writes parses, validates and stays within the bound the
generator promises."""

import json
import random

import jsonschema
import numpy as np
import pytest
import torch

from ondol.constrained.grammar import Grammar, GrammarCompiler, GrammarMatcher
from ondol.tokenizer import Tokenizer
from tests.schema_generator import MAX_DOC_BYTES, random_schema, worst_case_bytes

N_SCHEMAS = 300
WALKS = 3  # documents per schema
MAX_WALK = 400


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir) -> Tokenizer:
    return Tokenizer.from_folder(tiny_model_dir)  # Llama 3-style byte-level BPE


@pytest.fixture(scope="module")
def compiler(tokenizer) -> GrammarCompiler:
    return GrammarCompiler(tokenizer, tokenizer.vocab_size, cache_size=N_SCHEMAS)


def random_token_walk(matcher: GrammarMatcher, rng: random.Random, end_ids, cap: int = MAX_WALK) -> list[int]:
    """Tokens chosen uniformly among those the grammar allows, until it has terminated, or it
    accepts and a coin says stop, or ``cap`` tokens."""
    bitmask = torch.zeros((1, matcher.bitmask_words), dtype=torch.int32)
    tokens: list[int] = []
    while len(tokens) < cap and not matcher.is_terminated:
        if matcher.is_accepting and rng.random() < 0.5:
            break
        matcher.fill_bitmask(bitmask, 0)
        bits = np.unpackbits(bitmask[0].numpy().view(np.uint8), count=matcher.vocab_size, bitorder="little")
        allowed = [t for t in np.flatnonzero(bits).tolist() if t not in end_ids]
        if not allowed:  # only an end token may follow
            break
        token = rng.choice(allowed)
        assert matcher.accept(token), f"token {token} was in the mask but refused"
        tokens.append(token)
    return tokens


def test_random_schemas_are_valid_compile_and_bound_their_documents(tokenizer, compiler):
    rng = random.Random(20240501)
    end_ids = set(tokenizer.eos_token_ids)
    sizes = []
    for i in range(N_SCHEMAS):
        schema = random_schema(rng)
        jsonschema.Draft202012Validator.check_schema(schema)
        bound = worst_case_bytes(schema)
        assert bound <= MAX_DOC_BYTES
        validator = jsonschema.Draft202012Validator(schema)
        for _ in range(WALKS):
            matcher = compiler.matcher(Grammar.json_schema(schema))  # raises if ondol or llguidance refuses it
            tokens = random_token_walk(matcher, rng, end_ids)
            text = tokenizer.decode(tokens)
            context = f"schema {i}: {json.dumps(schema, ensure_ascii=False)}\ndocument: {text!r}"
            assert len(tokens) < MAX_WALK and matcher.is_accepting, context
            document = json.loads(text)
            assert validator.is_valid(document), context
            assert len(text.encode()) <= bound, context
            sizes.append(len(tokens))
    # The walks must reach into the schemas, not stop at the first accepting state every time.
    assert np.mean(sizes) > 10
