"""Streaming detokenization: the pieces always add up to the full decode and never split a character."""

import random

import pytest

from ondol.tokenizer import Tokenizer
from tests.tokenizer_fixtures import CORPUS, TEST_STRINGS, byte_level_bpe, spm_bpe

BACKENDS = {
    "spm_byte_fallback": spm_bpe,
    "llama3_byte_level": byte_level_bpe,
    "gpt2_byte_level": lambda: byte_level_bpe("gpt2"),
}


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def tokenizer(request):
    return Tokenizer(BACKENDS[request.param](), bos_token=None, eos_token=None, eos_token_ids=(), chat_template=None)


def stream(tokenizer, ids):
    detokenizer = tokenizer.detokenizer()
    return [detokenizer.add(i) for i in ids] + [detokenizer.flush()]


def _byte_symbols() -> dict[int, str]:
    """GPT-2's bytes_to_unicode: the character that spells each byte in a byte-level vocabulary."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + n) for n, b in enumerate(others)}}


BYTE_SYMBOLS = _byte_symbols()


def byte_token(tokenizer, byte: int) -> int:
    """The id of the token that stands for exactly one byte (<0xNN> with byte fallback)."""
    return tokenizer.token_to_id(f"<0x{byte:02X}>" if tokenizer.byte_fallback_ids else BYTE_SYMBOLS[byte])


def as_byte_tokens(tokenizer, text):
    """``text`` spelled one byte per token, so every multi-byte character spans several tokens."""
    return [byte_token(tokenizer, b) for b in text.encode()]


def random_sequences(tokenizer, count, seed):
    rng = random.Random(seed)
    singles, words = [byte_token(tokenizer, b) for b in range(256)], CORPUS.split()
    texts = TEST_STRINGS + CORPUS.splitlines()
    for n in range(count):
        kind = n % 5
        if kind == 0:  # real text, Korean, emoji and code mixed
            text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) + rng.choice(texts)
            yield tokenizer.encode(text, add_special_tokens=rng.random() < 0.5)
        elif kind == 1:  # random byte tokens: mostly broken UTF-8
            yield [rng.choice(singles) for _ in range(rng.randint(1, 30))]
        elif kind == 2:  # valid text spelled byte by byte: every Hangul syllable spans 3 tokens
            yield as_byte_tokens(tokenizer, rng.choice(texts))
        elif kind == 3:  # anything at all, special tokens included
            yield [rng.randrange(tokenizer.vocab_size) for _ in range(rng.randint(0, 30))]
        else:  # real text with byte tokens spliced in
            ids = tokenizer.encode(rng.choice(texts))
            for _ in range(rng.randint(1, 4)):
                ids.insert(rng.randint(0, len(ids)), rng.choice(singles))
            yield ids


def test_pieces_concatenate_to_full_decode(tokenizer):
    for ids in random_sequences(tokenizer, 1500, seed=1234):
        pieces = stream(tokenizer, ids)
        full = tokenizer.decode(ids)
        assert "".join(pieces) == full, ids
        if "\ufffd" not in full:
            assert not any("\ufffd" in piece for piece in pieces), (ids, pieces)


def test_special_tokens_kept_when_asked(tokenizer):
    # Tool-call markers such as <|python_tag|> are special tokens the parser must see in the text.
    for ids in random_sequences(tokenizer, 300, seed=99):
        detokenizer = tokenizer.detokenizer(skip_special_tokens=False)
        pieces = [detokenizer.add(t) for t in ids] + [detokenizer.flush()]
        assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=False), ids


KOREAN_AND_EMOJI = [
    "거실 에어컨 24도로 맞춰줘 🎉🏠",
    "🎉🏠 파티 시작! 🥳",
    "희귀한 글자: 뷁 똠 쀍 and ünïcödé ñ 中文 日本語",
    'def f(x):\n    return {"온도": x * 2}  # 계산\n',
    "👨‍👩‍👧‍👦" * 3,
    "뷁똠쀍",
]


@pytest.mark.parametrize("text", KOREAN_AND_EMOJI)
def test_korean_and_emoji_are_never_split(tokenizer, text):
    for ids in (tokenizer.encode(text, add_special_tokens=False), as_byte_tokens(tokenizer, text)):
        pieces = stream(tokenizer, ids)
        assert "".join(pieces) == tokenizer.decode(ids) == text
        assert not any("\ufffd" in piece for piece in pieces)


def test_plain_text_is_not_held_back(tokenizer):
    # With no character split across tokens, each token's text comes out as soon as it is added.
    ids = tokenizer.encode("turn off all the bedroom lights then set the thermostat", add_special_tokens=False)
    assert not set(ids) & tokenizer.byte_fallback_ids
    detokenizer = tokenizer.detokenizer()
    emitted = ""
    for n, token_id in enumerate(ids, start=1):
        emitted += detokenizer.add(token_id)
        assert emitted == tokenizer.decode(ids[:n])
    assert detokenizer.flush() == ""


def test_leading_space_is_stripped_once(tokenizer):
    ids = tokenizer.encode(" hello world", add_special_tokens=True)
    assert "".join(stream(tokenizer, ids)) == tokenizer.decode(ids)
    special = sorted(tokenizer.special_token_ids)
    if special:  # special tokens in the middle are skipped without disturbing the spacing
        words = tokenizer.encode(" hello", add_special_tokens=False) + [special[-1]]
        ids = words + tokenizer.encode(" world", add_special_tokens=False) + [special[0]] + words
        assert "".join(stream(tokenizer, ids)) == tokenizer.decode(ids)


def test_window_stays_short(tokenizer, monkeypatch):
    # The cost of a step must not grow with the output: every decode sees only a few tokens.
    text = (CORPUS + "\n".join(TEST_STRINGS)) * 3
    ids = tokenizer.encode(text)
    assert len(ids) > 1500
    seen, decode = [], tokenizer.decode
    monkeypatch.setattr(tokenizer, "decode", lambda window, **kw: seen.append(len(window)) or decode(window, **kw))
    detokenizer = tokenizer.detokenizer()
    pieces = [detokenizer.add(i) for i in ids] + [detokenizer.flush()]
    assert "".join(pieces) == decode(ids)
    # Bounded by the longest stretch held back (a run of byte tokens: a few emoji), not by the
    # 1500+ tokens of output.
    assert max(seen) <= 32


def test_flush_of_nothing_is_empty(tokenizer):
    assert tokenizer.detokenizer().flush() == ""
