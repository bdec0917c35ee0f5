"""The embedded model's tokenizer: byte-level BPE trained on ondol's own device-control corpus.

Byte-level, so any text encodes (a device name never seen in training is still copied, byte by
byte if need be); NFKC and lowercase first, so full-width "ＴＶ" from a Korean IME and "Living Room
AC" are the same tokens as "tv" and "living room ac" — the model spends none of its few parameters
on case; digits one by one. Three special tokens frame an example: ``<|user|>`` utterance ``<|calls|>`` calls
``<|end|>``; ``<|pad|>`` fills batches.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers.trainers import BpeTrainer

SPECIALS = ["<|pad|>", "<|user|>", "<|calls|>", "<|end|>"]
PAD, EOS = "<|pad|>", "<|end|>"


def train_tokenizer(texts: Iterable[str], out: Path, vocab_size: int = 4096) -> Tokenizer:
    """Train on ``texts`` and write ``tokenizer.json`` and ``tokenizer_config.json`` into ``out``."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    # Digits one by one: "24" in the request and in "temperature=24" are then the same two tokens,
    # so a number is copied digit for digit instead of being learned number by number.
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=2,
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": EOS, "pad_token": PAD,
        "add_bos_token": False, "add_eos_token": False, "model_max_length": 256, "clean_up_tokenization_spaces": False,
    }, indent=2) + "\n", encoding="utf-8")
    return tok


__all__ = ["EOS", "PAD", "SPECIALS", "train_tokenizer"]
