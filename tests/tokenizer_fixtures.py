"""Small real tokenizers, trained in-process, for the tokenizer tests (no network, no model files).

Two families, each shaped like the published tokenizer it stands in for:

* byte-level BPE, like Llama 3 (``style="llama3"``: regex split + ByteLevel, ``ignore_merges``,
  ``<|begin_of_text|>`` added by the post-processor) or GPT-2 (``style="gpt2"``);
* SentencePiece-style BPE with byte fallback, like Llama 2's ``tokenizer.json``: ``<unk> <s> </s>``
  at ids 0-2, ``<0x00>``..``<0xFF>`` at ids 3-258, a ``▁`` normalizer and a decoder that strips the
  prefix space.

The vocabularies are tiny (~450 tokens) and the alphabets limited, so Korean and emoji really come
out as byte tokens. ``gguf_fields`` turns one into the metadata llama.cpp's ``convert_hf_to_gguf.py``
would write for it.
"""

import collections
import functools
import json
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import BpeTrainer
from transformers import PreTrainedTokenizerFast

from ondol.tokenizer.gguf_vocab import LLAMA3_SPLIT

CORPUS = """\
거실 에어컨 24도로 맞춰줘
안방 불 꺼줘
주방 조명 밝기를 50%로 낮춰줘
현관문 잠겼는지 확인해줘
내일 아침 7시에 알람 맞춰줘
로봇청소기 거실부터 청소 시작해
오늘 서울 날씨 어때?
보일러 온도 22도로 올려줘 🏠
세탁기 끝나면 알려줘 🧺
공기청정기 자동 모드로 바꿔줘
거실 TV 음량 좀 줄여줘
에어컨 끄고 창문 열어줘
turn off all the bedroom lights
set the living room thermostat to 72 degrees
is the front door locked?
start the robot vacuum in the kitchen 🤖
remind me to water the plants at 6 pm 🌱
what's the weather like tomorrow?
dim the hallway lights to 30 percent
play some jazz in the living room 🎷
the washing machine finished its cycle 🎉
lock all doors and arm the security system
def set_temperature(room: str, celsius: float) -> None:
    device = home.devices[room]["thermostat"]
    device.set(target=celsius)  # 거실 온도 설정
for light in home.lights:
    if light.room == "bedroom":
        light.off()
{"device": "aircon", "room": "거실", "temp": 24, "mode": "cool"}
if (sensor.value > 30) { alert("too hot! 🔥"); }
SELECT name, state FROM devices WHERE room = '주방';
오늘 파티 준비 완료 🎉🏠✨
Good night! 잘 자요 😴
"""

# Llama 3's split pattern (also what llama.cpp calls the "llama-bpe" pre-tokenizer).
BYTE_LEVEL_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|im_start|>",
    "<|im_end|>",
]
SPM_SPECIALS = ["<unk>", "<s>", "</s>"]
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]

# Strings the encode/decode parity tests run on: Korean, English, emoji, code, whitespace oddities,
# characters never seen in training, and special tokens written in the text.
TEST_STRINGS = [
    "거실 에어컨 24도로 맞춰줘",
    "turn off all the bedroom lights",
    "🎉🏠 파티 시작! 🥳",
    'def f(x):\n    return {"온도": x * 2}  # 계산\n',
    "Mixed 한국어 and English 텍스트 with emoji 😴✨ and numbers 1234567.",
    "  leading and  double   spaces\tand tabs\n\nnewlines ",
    "희귀한 글자: 뷁 똠 쀍 and ünïcödé ñ 中文 日本語",
    "",
    " ",
    "<s>거실 불 켜줘</s> and <|eot_id|> or <|begin_of_text|>hi",
]


def _train(tokenizer: Tokenizer, vocab_size: int, **trainer_kwargs) -> dict:
    trainer = BpeTrainer(vocab_size=vocab_size, show_progress=False, **trainer_kwargs)
    tokenizer.train_from_iterator(CORPUS.splitlines(), trainer)
    return json.loads(tokenizer.to_str())["model"]


@functools.cache
def _byte_level_json(style: str) -> str:
    if style == "llama3":
        pre = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    elif style == "gpt2":
        pre = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        raise ValueError(style)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre
    trained = _train(tokenizer, 420, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    # Rebuild with ``ignore_merges`` like Llama 3's tokenizer.json (GPT-2 has it off).
    tokenizer.model = models.BPE(
        trained["vocab"], [tuple(m) for m in trained["merges"]], ignore_merges=style == "llama3"
    )
    tokenizer.decoder = decoders.ByteLevel()
    # Specials come after the vocabulary, as in Llama 3 (ids 128000+).
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in BYTE_LEVEL_SPECIALS])
    if style == "llama3":
        bos = "<|begin_of_text|>"
        tokenizer.post_processor = processors.Sequence(
            [
                processors.ByteLevel(trim_offsets=False),
                processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tokenizer.token_to_id(bos))]),
            ]
        )
    # A non-special added token, like ``<think>`` in reasoning models.
    tokenizer.add_tokens([AddedToken("<think>", normalized=False, special=False)])
    return tokenizer.to_str()


def byte_level_bpe(style: str = "llama3") -> Tokenizer:
    """A fresh (mutable) byte-level BPE tokenizer; training happens once per process."""
    return Tokenizer.from_str(_byte_level_json(style))


@functools.cache
def _spm_json() -> str:
    # Train like SentencePiece: words start with "▁" and merges never cross them.
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
    # A limited alphabet leaves most Hangul syllables and all emoji to byte fallback. The trainer's
    # own limit breaks ties between equally frequent characters in hash order (a different
    # tokenizer each run), so the 60 are chosen here: most frequent first, then by code point.
    counts = collections.Counter(c for line in CORPUS.splitlines() for c in "▁" + line.replace(" ", "▁"))
    alphabet = sorted(counts, key=lambda c: (-counts[c], c))[:60]
    trained = _train(tokenizer, 200, limit_alphabet=60, initial_alphabet=alphabet)
    # Llama 2's layout: specials, then the 256 byte tokens, then the learned pieces in merge order.
    pieces = sorted(trained["vocab"], key=trained["vocab"].get)
    vocab = {token: i for i, token in enumerate(SPM_SPECIALS + BYTE_TOKENS + pieces)}
    tokenizer = Tokenizer(
        models.BPE(vocab, [tuple(m) for m in trained["merges"]], unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    )
    # Llama 2's tokenizer.json: no pre-tokenizer, the prefix space comes from the normalizer.
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPM_SPECIALS])
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tokenizer.to_str()


def spm_bpe() -> Tokenizer:
    """A fresh SentencePiece-style BPE tokenizer with byte fallback (Llama 2 shaped)."""
    return Tokenizer.from_str(_spm_json())


def save_hf_folder(backend: Tokenizer, path: Path, *, bos_token: str, eos_token: str, **kwargs) -> Path:
    """Write ``backend`` as a Hugging Face tokenizer folder, the way transformers itself does."""
    hf = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos_token, eos_token=eos_token, **kwargs)
    hf.save_pretrained(path)
    return path


def gguf_fields(backend: Tokenizer, kind: str, **extra) -> dict:
    """The tokenizer metadata llama.cpp's ``convert_hf_to_gguf.py`` writes for ``backend``.

    ``kind`` is "llama" (SentencePiece-style) or "gpt2" (byte-level). Token types follow the
    converter: byte tokens are BYTE (6), special added tokens CONTROL (3), other added tokens
    USER_DEFINED (4), the unknown token UNKNOWN (2). For "llama" there are no merges in the file:
    the score of a piece is minus its merge rank (its id, as the pieces were laid out in merge
    order), which is how SentencePiece BPE scores relate to the merge order. For "gpt2" the merges
    are written out and the scores are absent.
    """
    model = json.loads(backend.to_str())["model"]
    added = backend.get_added_tokens_decoder()
    tokens = [backend.id_to_token(i) for i in range(backend.get_vocab_size(with_added_tokens=True))]
    types = []
    for i, token in enumerate(tokens):
        if token == model.get("unk_token"):
            types.append(2)
        elif i in added:
            types.append(3 if added[i].special else 4)
        else:
            types.append(6 if kind == "llama" and token in BYTE_TOKENS else 1)
    fields = {
        "tokenizer.ggml.model": kind,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
    }
    if kind == "llama":
        fields["tokenizer.ggml.scores"] = [0.0 if t != 1 else -float(i) for i, t in enumerate(types)]
        fields["tokenizer.ggml.pre"] = "default"
    else:
        fields["tokenizer.ggml.merges"] = [" ".join(m) for m in model["merges"]]
    fields.update(extra)
    return fields
