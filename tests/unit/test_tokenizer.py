"""Tokenizer: Hugging Face folders and GGUF vocabularies tokenize exactly like their references."""

import json
import random

import pytest
from transformers import AutoTokenizer

from ondol.errors import ModelFormatError, ModelNotFoundError, UnsupportedModelError
from ondol.tokenizer import Tokenizer, tokenizer_from_gguf_fields
from tests.tokenizer_fixtures import CORPUS, TEST_STRINGS, byte_level_bpe, gguf_fields, save_hf_folder, spm_bpe

# name -> (backend factory, bos, eos)
FOLDERS = {
    "llama3_byte_level": (byte_level_bpe, "<|begin_of_text|>", "<|eot_id|>"),
    "gpt2_byte_level": (lambda: byte_level_bpe("gpt2"), "<|endoftext|>", "<|endoftext|>"),
    "spm_byte_fallback": (spm_bpe, "<s>", "</s>"),
}
STRINGS = TEST_STRINGS + CORPUS.splitlines()[::3]


def make_folder(tmp_path, name="spm_byte_fallback", **kwargs):
    factory, bos, eos = FOLDERS[name]
    return save_hf_folder(factory(), tmp_path, bos_token=bos, eos_token=eos, **kwargs)


def edit_json(path, **changes):
    data = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**data, **changes}))


@pytest.fixture(scope="module", params=sorted(FOLDERS))
def pair(request, tmp_path_factory):
    """(ondol Tokenizer, transformers AutoTokenizer) loaded from the same saved folder."""
    path = make_folder(tmp_path_factory.mktemp(request.param), request.param)
    return Tokenizer.from_folder(path), AutoTokenizer.from_pretrained(path)


@pytest.mark.parametrize("add_special_tokens", [True, False])
def test_encode_matches_transformers(pair, add_special_tokens):
    ours, reference = pair
    for text in STRINGS:
        expected = reference(text, add_special_tokens=add_special_tokens)["input_ids"]
        assert ours.encode(text, add_special_tokens) == expected, text


@pytest.mark.parametrize("skip_special_tokens", [True, False])
def test_decode_matches_transformers(pair, skip_special_tokens):
    ours, reference = pair
    rng = random.Random(7)
    sequences = [ours.encode(text) for text in STRINGS]
    sequences += [[rng.randrange(ours.vocab_size) for _ in range(20)] for _ in range(50)]
    for ids in sequences:
        assert ours.decode(ids, skip_special_tokens) == reference.decode(ids, skip_special_tokens=skip_special_tokens)


def test_vocabulary_matches_transformers(pair):
    ours, reference = pair
    assert ours.vocab_size == len(reference)
    assert ours.bos_token_id == reference.bos_token_id
    assert ours.eos_token_ids == (reference.eos_token_id,)
    for token_id in (0, 5, ours.vocab_size - 1):
        token = ours.id_to_token(token_id)
        assert token == reference.convert_ids_to_tokens(token_id)
        assert ours.token_to_id(token) == token_id
    assert ours.token_to_id("not a token in this vocabulary") is None


def test_explicit_bos_eos_flags_rewrite_post_processor(tmp_path):
    # add_bos_token/add_eos_token build the same TemplateProcessing transformers' update_post_processor does.
    path = make_folder(tmp_path)
    reference = AutoTokenizer.from_pretrained(path)
    for add_bos, add_eos in [(False, True), (True, True), (False, False)]:
        edit_json(path / "tokenizer_config.json", add_bos_token=add_bos, add_eos_token=add_eos)
        ours = Tokenizer.from_folder(path)
        reference.add_bos_token, reference.add_eos_token = add_bos, add_eos  # each setter rebuilds the processor
        for text in STRINGS:
            assert ours.encode(text) == reference(text)["input_ids"]
        assert (ours.encode("hi")[0] == 1) == add_bos and (ours.encode("hi")[-1] == 2) == add_eos


def test_config_variants(tmp_path):
    path = make_folder(tmp_path, chat_template="from jinja file")
    edit_json(
        path / "tokenizer_config.json",
        bos_token={"content": "<s>", "lstrip": False, "normalized": False, "special": True},
        eos_token={"content": "</s>"},
        chat_template=[{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "from config"}],
    )
    edit_json(path / "generation_config.json", eos_token_id=[2, 0])
    tokenizer = Tokenizer.from_folder(path)
    assert (tokenizer.bos_token, tokenizer.bos_token_id, tokenizer.eos_token) == ("<s>", 1, "</s>")
    assert tokenizer.eos_token_ids == (2, 0)
    assert tokenizer.chat_template == "from jinja file"  # chat_template.jinja wins over the config

    (path / "chat_template.jinja").unlink()
    assert Tokenizer.from_folder(path).chat_template == "from config"  # the "default" of a named list
    assert Tokenizer.from_folder(path).tool_chat_template == "tools"  # used when tools are passed

    # Older folders keep the special tokens in special_tokens_map.json and a single eos id.
    edit_json(path / "tokenizer_config.json", bos_token=None, eos_token=None, chat_template="plain")
    edit_json(path / "special_tokens_map.json", bos_token="<s>", eos_token={"content": "<unk>"})
    edit_json(path / "generation_config.json", eos_token_id=2)
    tokenizer = Tokenizer.from_folder(path)
    assert (tokenizer.bos_token_id, tokenizer.eos_token_ids, tokenizer.chat_template) == (1, (0, 2), "plain")


def test_llama3_end_ids_come_from_generation_config(tmp_path):
    path = make_folder(tmp_path, "llama3_byte_level")
    ids = [byte_level_bpe().token_to_id(t) for t in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")]
    edit_json(path / "generation_config.json", eos_token_id=ids)
    tokenizer = Tokenizer.from_folder(path)
    assert tokenizer.eos_token_ids == (ids[2], ids[0], ids[1])  # the tokenizer's own eos first


def test_folder_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="tokenizer.json"):
        Tokenizer.from_folder(tmp_path / "missing")
    (tmp_path / "tokenizer.model").write_bytes(b"\x0a\x00")
    with pytest.raises(UnsupportedModelError, match="tokenizer.json"):
        Tokenizer.from_folder(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": ')
    with pytest.raises(ModelFormatError, match="tokenizer.json"):
        Tokenizer.from_folder(tmp_path)

    path = make_folder(tmp_path / "broken_config")
    (path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="tokenizer_config.json"):
        Tokenizer.from_folder(path)


# --- GGUF vocabularies --------------------------------------------------------------------------

# kind -> (original backend factory, GGUF fields builder)
GGUF_CASES = {
    "llama": (
        spm_bpe,
        lambda b: gguf_fields(
            b,
            "llama",
            **{
                "tokenizer.ggml.bos_token_id": 1,
                "tokenizer.ggml.eos_token_id": 2,
                "tokenizer.ggml.unknown_token_id": 0,
                "tokenizer.ggml.add_bos_token": True,
                "tokenizer.ggml.add_eos_token": False,
                "tokenizer.chat_template": "{{ bos_token }}{{ messages[0].content }}",
            },
        ),
    ),
    "gpt2_llama_bpe": (
        byte_level_bpe,
        lambda b: gguf_fields(
            b,
            "gpt2",
            **{
                "tokenizer.ggml.pre": "llama-bpe",
                "tokenizer.ggml.bos_token_id": b.token_to_id("<|begin_of_text|>"),
                "tokenizer.ggml.eos_token_id": b.token_to_id("<|eot_id|>"),
                "tokenizer.ggml.eot_token_id": b.token_to_id("<|eot_id|>"),
                "tokenizer.ggml.eom_token_id": b.token_to_id("<|eom_id|>"),
                "tokenizer.ggml.add_bos_token": True,
            },
        ),
    ),
    "gpt2": (lambda: byte_level_bpe("gpt2"), lambda b: gguf_fields(b, "gpt2", **{"tokenizer.ggml.pre": "gpt-2"})),
}


@pytest.fixture(scope="module", params=sorted(GGUF_CASES))
def gguf_pair(request):
    """(Tokenizer rebuilt from GGUF fields, the original tokenizers.Tokenizer)."""
    factory, fields = GGUF_CASES[request.param]
    original = factory()
    return tokenizer_from_gguf_fields(fields(original)), original


def test_gguf_tokenizes_like_original(gguf_pair):
    ours, original = gguf_pair
    rng = random.Random(3)
    words, chars = CORPUS.split(), sorted(set(CORPUS))
    texts = STRINGS + CORPUS.splitlines()
    texts += [" ".join(rng.choice(words) for _ in range(rng.randint(1, 10))) for _ in range(200)]
    texts += ["".join(rng.choice(chars) for _ in range(rng.randint(1, 25))) for _ in range(200)]
    assert ours.vocab_size == original.get_vocab_size()
    for text in texts:
        for add_special_tokens in (True, False):
            ids = original.encode(text, add_special_tokens=add_special_tokens).ids
            assert ours.encode(text, add_special_tokens) == ids, text
        for skip in (True, False):
            assert ours.decode(ids, skip) == original.decode(ids, skip_special_tokens=skip)


def test_gguf_special_tokens():
    backend = byte_level_bpe()
    tokenizer = tokenizer_from_gguf_fields(GGUF_CASES["gpt2_llama_bpe"][1](backend))
    end = {backend.token_to_id(t) for t in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>", "<|im_end|>")}
    assert tokenizer.eos_token_ids[0] == backend.token_to_id("<|eot_id|>") and set(tokenizer.eos_token_ids) == end
    assert tokenizer.bos_token == "<|begin_of_text|>"
    assert tokenizer.encode("<think>hi", add_special_tokens=False)[0] == backend.token_to_id("<think>")
    assert tokenizer.decode(tokenizer.encode("<think>hi<|eot_id|>")) == "<think>hi"  # user-defined stays as text

    spm = tokenizer_from_gguf_fields(GGUF_CASES["llama"][1](spm_bpe()))
    assert (spm.bos_token_id, spm.eos_token_ids) == (1, (2,))
    assert spm.apply_chat_template([{"role": "user", "content": "안녕"}]) == "<s>안녕"

    # llama.cpp writes named templates as tokenizer.chat_template.NAME; "tool_use" serves tools.
    fields = GGUF_CASES["llama"][1](spm_bpe()) | {"tokenizer.chat_template.tool_use": "{{ tools | length }}"}
    spm = tokenizer_from_gguf_fields(fields)
    assert spm.apply_chat_template([], tools=[{"type": "function"}]) == "1"
    assert spm.apply_chat_template([{"role": "user", "content": "안녕"}]) == "<s>안녕"


def test_gguf_defaults_follow_llama_cpp():
    fields = GGUF_CASES["llama"][1](spm_bpe())
    del fields["tokenizer.ggml.add_bos_token"]  # SentencePiece vocabularies add BOS unless told not to
    assert tokenizer_from_gguf_fields(fields).encode("hi")[0] == 1
    fields["tokenizer.ggml.add_space_prefix"] = False
    tokenizer = tokenizer_from_gguf_fields(fields)
    assert not tokenizer.id_to_token(tokenizer.encode("hello", add_special_tokens=False)[0]).startswith("▁")
    assert tokenizer.decode(tokenizer.encode(" hello there")) == " hello there"


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"tokenizer.ggml.model": "bert"}, UnsupportedModelError, "'llama' and 'gpt2'"),
        ({"tokenizer.ggml.pre": "exotic-regex"}, UnsupportedModelError, "exotic-regex"),
        ({"tokenizer.ggml.tokens": None}, ModelFormatError, "tokenizer.ggml.tokens"),
        ({"tokenizer.ggml.token_type": [1]}, ModelFormatError, "token types"),
        ({"tokenizer.ggml.merges": ["a b c"]}, ModelFormatError, "merge"),
        ({"tokenizer.ggml.bos_token_id": 10**6}, ModelFormatError, "bos_token_id"),
    ],
)
def test_gguf_errors(change, error, message):
    fields = GGUF_CASES["gpt2_llama_bpe"][1](byte_level_bpe())
    fields.update(change)
    with pytest.raises(error, match=message):
        tokenizer_from_gguf_fields(fields)


def test_gguf_llama_needs_scores_or_merges():
    fields = GGUF_CASES["llama"][1](spm_bpe())
    del fields["tokenizer.ggml.scores"]
    with pytest.raises(ModelFormatError, match="scores"):
        tokenizer_from_gguf_fields(fields)
