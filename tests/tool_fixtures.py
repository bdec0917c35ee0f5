"""Tiny random-weight checkpoints of the model families ondol calls tools with, each with its real
chat template (tests/chat_templates/, see the README there) and the special tokens its tool-call
format uses, so tool calling runs end to end without downloading a model.

=============  ==============================  ==============================================
family         shaped like                     tokenizer
=============  ==============================  ==============================================
llama3.1       Llama 3.1 8B Instruct           Llama 3 byte-level BPE; <|python_tag|>, <|eom_id|>,
llama3.2       Llama 3.2 1B/3B Instruct        <|eot_id|>... special; ends on <|end_of_text|>,
                                               <|eom_id|> and <|eot_id|>
hermes         Hermes 2 Pro (Llama 3 8B)       Llama 3 BPE plus <tool_call>, </tool_call>,
                                               <tool_response>... added but not special (as
                                               Nous added them); ends on <|im_end|>
qwen2.5        Qwen2.5 Instruct                GPT-2-style byte-level BPE, no BOS; <tool_call>,
                                               </tool_call> added, not special; ends on
                                               <|im_end|> and <|endoftext|>
mistral_v0.3   Mistral 7B Instruct v0.3        SentencePiece-style BPE with byte fallback; [INST],
                                               [/INST], [TOOL_CALLS]... special at ids 3-9, as in
                                               v0.3; ends on </s>
=============  ==============================  ==============================================

The Mistral tokenizer splits words like the current Mistral tokenizer.json (Metaspace, "▁" added
before the first word only), so ``[TOOL_CALLS] [`` encodes as ``[TOOL_CALLS]`` then ``▁[``, the
tokens the model was trained to emit.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

from tests.model_fixtures import BASE, SHAPES
from tests.tokenizer_fixtures import BYTE_TOKENS, SPM_SPECIALS, byte_level_bpe, save_hf_folder, spm_bpe

FAMILIES = ("llama3.1", "llama3.2", "hermes", "qwen2.5", "mistral_v0.3")
TEMPLATES = Path(__file__).parent / "chat_templates"

HERMES_ADDED = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<tools>", "</tools>"]
MISTRAL_CONTROL = ["[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                   "[TOOL_RESULTS]", "[/TOOL_RESULTS]"]


@dataclass(frozen=True)
class Family:
    shape: str  # tests.model_fixtures.SHAPES
    bos: str | None
    eos: str  # tokenizer_config's eos_token
    end_tokens: tuple[str, ...]  # generation_config's eos_token_id


FAMILY = {
    "llama3.1": Family("llama3.2", "<|begin_of_text|>", "<|eot_id|>", ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")),
    "llama3.2": Family("llama3.2", "<|begin_of_text|>", "<|eot_id|>", ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")),
    "hermes": Family("llama3.2", "<|begin_of_text|>", "<|im_end|>", ("<|im_end|>",)),
    "qwen2.5": Family("qwen2", None, "<|im_end|>", ("<|im_end|>", "<|endoftext|>")),
    "mistral_v0.3": Family("mistral", "<s>", "</s>", ("</s>",)),
}


def chat_template(family: str) -> str:
    return (TEMPLATES / f"{family}.jinja").read_text(encoding="utf-8")


def family_tokenizer(family: str) -> Tokenizer:
    """A fresh backend tokenizer with ``family``'s special tokens."""
    if family in ("llama3.1", "llama3.2"):
        return byte_level_bpe("llama3")
    if family == "hermes":
        tok = byte_level_bpe("llama3")
        tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in HERMES_ADDED])
        return tok
    if family == "qwen2.5":
        tok = byte_level_bpe("gpt2")
        tok.add_special_tokens([AddedToken("<|endoftext|>", normalized=False, special=True)])
        tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in ("<tool_call>", "</tool_call>")])
        return tok
    if family == "mistral_v0.3":
        return Tokenizer.from_str(_mistral_json())
    raise ValueError(family)


@functools.cache
def _mistral_json() -> str:
    trained = json.loads(spm_bpe().to_str())["model"]
    pieces = sorted((t for t in trained["vocab"] if t not in SPM_SPECIALS and t not in BYTE_TOKENS),
                    key=trained["vocab"].get)
    vocab = {t: i for i, t in enumerate(SPM_SPECIALS + MISTRAL_CONTROL + BYTE_TOKENS + pieces)}
    tok = Tokenizer(models.BPE(vocab, [tuple(m) for m in trained["merges"]], unk_token="<unk>", fuse_unk=True,
                               byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPM_SPECIALS + MISTRAL_CONTROL])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok.to_str()


def save_tool_tokenizer(path: Path, family: str) -> Path:
    """Write ``family``'s tokenizer, chat template and generation_config.json into ``path``."""
    spec, tok = FAMILY[family], family_tokenizer(family)
    path.mkdir(parents=True, exist_ok=True)
    save_hf_folder(tok, path, bos_token=spec.bos, eos_token=spec.eos, chat_template=chat_template(family))
    generation = path / "generation_config.json"
    if not generation.exists():  # a checkpoint's own (from save_pretrained) says the same and more
        config = {"eos_token_id": [tok.token_to_id(t) for t in spec.end_tokens]}
        if spec.bos is not None:
            config["bos_token_id"] = tok.token_to_id(spec.bos)
        generation.write_text(json.dumps(config, indent=2))
    return path


def make_tool_checkpoint(path: Path, family: str, seed: int = 0) -> Path:
    """Write a complete tiny checkpoint of ``family`` (config, safetensors, tokenizer, template)."""
    spec, tok = FAMILY[family], family_tokenizer(family)
    config_cls, model_cls, overrides = SHAPES[spec.shape]
    end_ids = [tok.token_to_id(t) for t in spec.end_tokens]
    bos_id = tok.token_to_id(spec.bos) if spec.bos is not None else None
    # Prompts with tool definitions run to a few thousand tokens with this small vocabulary.
    config = config_cls(**{**BASE, **overrides, "max_position_embeddings": 4096}, vocab_size=tok.get_vocab_size(with_added_tokens=True),
                        bos_token_id=bos_id, eos_token_id=end_ids)
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    model.generation_config.eos_token_id = end_ids
    model.save_pretrained(path)
    return save_tool_tokenizer(path, family)
