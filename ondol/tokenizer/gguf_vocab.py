"""Rebuilding a model's tokenizer from the vocabulary a GGUF file stores as metadata.

A GGUF file has no ``tokenizer.json``: llama.cpp's converter writes the tokens, their scores and
types, the BPE merges and the special ids under ``tokenizer.ggml.*`` keys. From those we assemble
a ``tokenizers.Tokenizer`` that tokenizes like the original model (and like llama.cpp):

* ``llama``: SentencePiece-style BPE with byte fallback. The file has no merges; SentencePiece
  merges the adjacent pair whose result scores highest, so the merges are the vocabulary's
  two-piece splits ordered by score, as transformers' GGUF and SentencePiece converters derive
  them. ``▁`` marks spaces, prefixed to the text unless ``add_space_prefix`` is off.
* ``gpt2``: byte-level BPE with the stored merges, split into words by the regex that
  ``tokenizer.ggml.pre`` names.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as Backend

from ondol.errors import ModelFormatError, UnsupportedModelError
from ondol.tokenizer.tokenizer import Tokenizer

# tokenizer.ggml.token_type values (llama.cpp's llama_token_type). The others, 5 (unused) and
# 6 (byte, the <0xNN> tokens), are plain vocabulary entries.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED = 1, 2, 3, 4
_ARRAY = (list, tuple)

# Llama 3's pre-tokenizer split (llama.cpp's "llama-bpe").
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# tokenizer.ggml.pre -> (split regex, or None for GPT-2's built into ByteLevel; ignore_merges).
# llama.cpp sets ignore_merges for the Llama 3 family: a word that is a whole token is not merged.
_BYTE_LEVEL_PRE = {
    "default": (None, False),
    "gpt-2": (None, False),
    "llama-bpe": (LLAMA3_SPLIT, True),
    "llama3": (LLAMA3_SPLIT, True),
    "llama-v3": (LLAMA3_SPLIT, True),
}

# Tokens llama.cpp treats as ending generation by their text alone, whatever the eos key says.
_END_OF_GENERATION = {
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|im_end|>",
    "<|end|>",
    "<|endoftext|>",
    "<end_of_turn>",
    "<EOT>",
}


def tokenizer_from_gguf_fields(fields: Mapping[str, Any], source: str | None = None) -> Tokenizer:
    """Build the Tokenizer described by a GGUF file's metadata (values already decoded); ``source``
    names the file in errors."""
    kind = fields.get("tokenizer.ggml.model")
    tokens = _field(fields, "tokenizer.ggml.tokens", _ARRAY)
    types = _field(fields, "tokenizer.ggml.token_type", _ARRAY, default=[NORMAL] * len(tokens))
    if len(types) != len(tokens):
        raise ModelFormatError(f"The GGUF file lists {len(tokens)} tokens but {len(types)} token types.")

    bos_id, eos_id, eot_id, eom_id, unk_id = (
        _token_id(fields, f"tokenizer.ggml.{name}_token_id", len(tokens))
        for name in ("bos", "eos", "eot", "eom", "unknown")
    )
    if kind == "llama":
        unk_id = unk_id if unk_id is not None else next((i for i, t in enumerate(types) if t == UNKNOWN), None)
        backend = _sentencepiece_bpe(fields, tokens, types, None if unk_id is None else tokens[unk_id])
    elif kind == "gpt2":
        backend = _byte_level_bpe(fields, tokens)
    else:
        raise UnsupportedModelError(
            f"The GGUF tokenizer model {kind!r} is not supported; ondol supports 'llama' and 'gpt2'."
        )
    # Control tokens (<s>, <|eot_id|>) are special: matched whole in text and skipped when decoding.
    # User-defined ones (<think>) are matched whole but decoded as text. Both already sit in the
    # model vocabulary, so adding them keeps their ids.
    backend.add_tokens(
        [
            AddedToken(token, normalized=False, special=token_type in (CONTROL, UNKNOWN))
            for token, token_type in zip(tokens, types)
            if token_type in (CONTROL, UNKNOWN, USER_DEFINED)
        ]
    )
    end_ids = [i for i in (eos_id, eot_id, eom_id) if i is not None]
    end_ids += [i for i, text in enumerate(tokens) if text in _END_OF_GENERATION]
    # llama.cpp's defaults when the file does not say: SentencePiece vocabularies and the Llama 3
    # pre-tokenizer add BOS, other byte-level ones do not.
    adds_bos = kind == "llama" or fields.get("tokenizer.ggml.pre") in ("llama-bpe", "llama3", "llama-v3")
    return Tokenizer(
        backend,
        bos_token=None if bos_id is None else tokens[bos_id],
        eos_token=None if eos_id is None else tokens[eos_id],
        eos_token_ids=tuple(dict.fromkeys(end_ids)),
        chat_template=_field(fields, "tokenizer.chat_template", str, default=None),
        tool_chat_template=_field(fields, "tokenizer.chat_template.tool_use", str, default=None),
        add_bos_token=bool(fields.get("tokenizer.ggml.add_bos_token", adds_bos)),
        add_eos_token=bool(fields.get("tokenizer.ggml.add_eos_token", False)),
        source=source,
    )


def _token_id(fields: Mapping[str, Any], key: str, vocab_size: int) -> int | None:
    token_id = fields.get(key)
    if token_id is not None and (not isinstance(token_id, int) or not 0 <= token_id < vocab_size):
        raise ModelFormatError(f"The GGUF key {key} holds {token_id!r}, which is not a token id.")
    return token_id


_REQUIRED = object()


def _field(fields: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any = _REQUIRED) -> Any:
    """``fields[key]`` checked to be a ``kind``; ``default`` if given and the key is absent."""
    if key not in fields and default is not _REQUIRED:
        return default
    value = fields.get(key)
    if not isinstance(value, kind):
        raise ModelFormatError(f"The GGUF key {key} is missing or does not hold the expected type of value.")
    return value


def _sentencepiece_bpe(
    fields: Mapping[str, Any], tokens: Sequence[str], types: Sequence[int], unk: str | None
) -> Backend:
    vocab = {token: i for i, token in enumerate(tokens)}
    if "tokenizer.ggml.merges" in fields:  # rare, but transformers honours them when present
        merges = _parse_merges(fields["tokenizer.ggml.merges"])
    else:
        scores = _field(fields, "tokenizer.ggml.scores", _ARRAY)
        if len(scores) != len(tokens):
            raise ModelFormatError(f"The GGUF file lists {len(tokens)} tokens but {len(scores)} scores.")
        merges = _merges_from_scores(tokens, scores, types)
    backend = Backend(models.BPE(vocab, merges, unk_token=unk, fuse_unk=True, byte_fallback=True))

    # Llama 2's tokenizer.json shape, which is also llama.cpp's behaviour: spaces become "▁", and
    # every stretch of text between special tokens gets a "▁" prefix, stripped again on decoding.
    add_prefix = fields.get("tokenizer.ggml.add_space_prefix", True)
    backend.normalizer = normalizers.Sequence(
        ([normalizers.Prepend("▁")] if add_prefix else []) + [normalizers.Replace(" ", "▁")]
    )
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
        + ([decoders.Strip(" ", 1, 0)] if add_prefix else [])
    )
    return backend


def _merges_from_scores(tokens: Sequence[str], scores: Sequence[float], types: Sequence[int]) -> list[tuple[str, str]]:
    """Every split of a normal token into two normal tokens, best-scoring result first.

    Same order as transformers' ``generate_merges``: by the merged token's score, then longer
    left and right parts first; splits of one token in order of their parts' ids.
    """
    ids = {token: i for i, (token, kind) in enumerate(zip(tokens, types)) if kind == NORMAL}
    merges = []
    for token, i in ids.items():
        splits = [(token[:k], token[k:]) for k in range(1, len(token)) if token[:k] in ids and token[k:] in ids]
        splits.sort(key=lambda pair: (ids[pair[0]], ids[pair[1]]))
        merges += [(left, right, scores[i]) for left, right in splits]
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)  # stable, like transformers
    return [(left, right) for left, right, _ in merges]


def _byte_level_bpe(fields: Mapping[str, Any], tokens: Sequence[str]) -> Backend:
    pre = fields.get("tokenizer.ggml.pre", "default")
    if pre not in _BYTE_LEVEL_PRE:
        raise UnsupportedModelError(
            f"The GGUF pre-tokenizer {pre!r} is not supported; ondol supports {', '.join(sorted(_BYTE_LEVEL_PRE))}."
        )
    split, ignore_merges = _BYTE_LEVEL_PRE[pre]
    merges = _parse_merges(_field(fields, "tokenizer.ggml.merges", _ARRAY))
    vocab = {token: i for i, token in enumerate(tokens)}
    backend = Backend(models.BPE(vocab, merges, ignore_merges=ignore_merges))
    if split is None:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    backend.decoder = decoders.ByteLevel()
    return backend


def _parse_merges(merges: Sequence[Any]) -> list[tuple[str, str]]:
    pairs = []
    for merge in merges:
        pair = merge.split(" ") if isinstance(merge, str) else ()
        if len(pair) != 2:
            raise ModelFormatError(f"The GGUF merge {merge!r} is not two tokens separated by a space.")
        pairs.append((pair[0], pair[1]))
    return pairs


def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: the printable character that stands for each byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}
