"""The tokenizer: a ``tokenizers.Tokenizer`` plus the facts about it that generation needs.

The heavy lifting (normalizing, pre-tokenizing, BPE, decoding) is the ``tokenizers`` library's; this
class adds what a Hugging Face folder or a GGUF file says around it: which tokens begin and end a
sequence, whether encoding adds them, and the chat template.
"""

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tokenizers
from tokenizers import processors

from ondol.errors import ChatTemplateError, ModelFormatError, ModelNotFoundError, UnsupportedModelError
from ondol.tokenizer.bounded import BoundedRenderer, TemplateBudget
from ondol.tokenizer.detokenize import IncrementalDetokenizer

# How ByteFallback recognises a byte token (tokenizers' decoders/byte_fallback.rs).
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


class Tokenizer:
    """Encode, decode and chat-format text for one model.

    ``eos_token_ids`` holds every id that ends generation (Llama 3 has ``<|eot_id|>``,
    ``<|eom_id|>`` and ``<|end_of_text|>``). ``add_bos_token``/``add_eos_token``, when either is
    given, replace the backend's post-processor the way transformers does for a tokenizer
    configured with them; left as ``None`` the backend's own post-processor decides. The backend
    is owned (and may be modified) by this object.

    Chat templates come with the model and are untrusted programs: they render in a worker
    process under ``template_budget`` (time, characters written, memory; ``ondol.tokenizer.bounded``).
    ``source`` names the model file or folder in errors about its templates.
    """

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        bos_token: str | None,
        eos_token: str | None,
        eos_token_ids: tuple[int, ...],
        chat_template: str | None,
        tool_chat_template: str | None = None,
        add_bos_token: bool | None = None,
        add_eos_token: bool | None = None,
        source: str | None = None,
    ):
        self._backend = backend
        self.source = source
        self._renderer = BoundedRenderer()
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.bos_token_id = backend.token_to_id(bos_token) if bos_token is not None else None
        self.eos_token_ids = tuple(eos_token_ids)
        self.chat_template = chat_template
        # Some models ship a second template for conversations with tools (Hermes 2 Pro's
        # "tool_use"); it is used whenever tools are passed, as transformers does.
        self.tool_chat_template = tool_chat_template
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
        if add_bos_token is not None or add_eos_token is not None:
            self._set_post_processor(bool(add_bos_token), bool(add_eos_token))

    def _set_post_processor(self, add_bos: bool, add_eos: bool) -> None:
        # transformers' update_post_processor, for the single sequences ondol encodes: a flag
        # whose token the vocabulary lacks is dropped.
        eos_id = self._backend.token_to_id(self.eos_token) if self.eos_token is not None else None
        template, special = ["$A:0"], []
        if add_bos and self.bos_token_id is not None:
            template.insert(0, f"{self.bos_token}:0")
            special.append((self.bos_token, self.bos_token_id))
        if add_eos and eos_id is not None:
            template.append(f"{self.eos_token}:0")
            special.append((self.eos_token, eos_id))
        self._backend.post_processor = processors.TemplateProcessing(single=template, special_tokens=special)

    @classmethod
    def from_folder(cls, path: str | Path) -> "Tokenizer":
        """Load the tokenizer of a Hugging Face model folder (``tokenizer.json`` and its configs)."""
        folder = Path(path)
        tokenizer_file = folder / "tokenizer.json"
        if not tokenizer_file.is_file():
            if (folder / "tokenizer.model").is_file():
                raise UnsupportedModelError(
                    f"{folder} has only a SentencePiece tokenizer.model; ondol needs tokenizer.json "
                    "(save the tokenizer with a recent transformers to create it)."
                )
            raise ModelNotFoundError(f"No tokenizer.json found in {folder}.")
        try:
            backend = tokenizers.Tokenizer.from_file(str(tokenizer_file))
        except Exception as err:  # tokenizers raises a bare Exception for any parse error
            raise ModelFormatError(f"{tokenizer_file} is not a valid tokenizer file: {err}.") from err

        config = _read_json(folder / "tokenizer_config.json")
        special_map = _read_json(folder / "special_tokens_map.json")
        # Older folders keep the special tokens only in special_tokens_map.json.
        bos_token = _token_content(config.get("bos_token")) or _token_content(special_map.get("bos_token"))
        eos_token = _token_content(config.get("eos_token")) or _token_content(special_map.get("eos_token"))

        eos_ids = [backend.token_to_id(eos_token)] if eos_token is not None else []
        generation_eos = _read_json(folder / "generation_config.json").get("eos_token_id")
        eos_ids += generation_eos if isinstance(generation_eos, list) else [generation_eos]

        return cls(
            backend,
            bos_token=bos_token,
            eos_token=eos_token,
            eos_token_ids=tuple(dict.fromkeys(i for i in eos_ids if isinstance(i, int))),
            chat_template=_chat_template(folder, config),
            tool_chat_template=_chat_template(folder, config, "tool_use"),
            # Explicit flags override tokenizer.json's post-processor, as in transformers 4 and
            # llama.cpp's converter. (transformers 5 ignores them once tokenizer.json exists.)
            add_bos_token=config.get("add_bos_token"),
            add_eos_token=config.get("add_eos_token"),
            source=str(folder),
        )

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._backend.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self._backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def to_json(self) -> str:
        """The backend as tokenizer.json text (what grammar libraries read the vocabulary from)."""
        return self._backend.to_str()

    def token_to_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._backend.id_to_token(token_id)

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        tools: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> str:
        """Render a conversation into the model's prompt text (encode it without special tokens)."""
        template = self.template_for(tools=bool(tools))
        if template is None:
            raise ChatTemplateError("This model has no chat template, so it cannot format chat messages.")
        which = "tool_use chat template" if tools and template is self.tool_chat_template else "chat template"
        return self._renderer.render(
            template,
            f"the {which} of {self.source}" if self.source else f"the model's {which}",
            messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token or "",
            eos_token=self.eos_token or "",
            tools=tools,
            **kwargs,
        )

    @property
    def template_budget(self) -> TemplateBudget:
        return self._renderer.budget

    @template_budget.setter
    def template_budget(self, budget: TemplateBudget) -> None:
        self._renderer.close()
        self._renderer = BoundedRenderer(budget)

    @functools.cached_property
    def max_token_chars(self) -> int:
        """The most characters any one token stands for (as the vocabulary spells it: byte-level
        vocabularies spell each byte as one character, so this bounds real characters too). Unless
        ``merges_characters``, a text of C characters is at least C / max_token_chars tokens, which
        lets a prompt too long for the context be refused before it is tokenized."""
        vocab = self._backend.get_vocab(with_added_tokens=True)
        return max(1, max((len(token) for token in vocab), default=1))

    @functools.cached_property
    def merges_characters(self) -> bool:
        """Whether tokenizing can make text shorter before the vocabulary sees it, or cover a run
        of characters with one token of fewer characters: a composing or stripping normalizer (NFC,
        NFKC, Strip, BERT's), a pre-tokenizer that drops what it splits on (Whitespace), or
        unknown characters fused into one unknown token. Llama's tokenizers do none of these."""
        model = self._backend.model
        if type(model).__name__ != "BPE" or (model.fuse_unk and not model.byte_fallback):
            return True
        return not (_only(self._backend.normalizer, "normalizers", _safe_normalizer)
                    and _only(self._backend.pre_tokenizer, "pretokenizers", _safe_pre_tokenizer))

    def template_for(self, tools: bool) -> str | None:
        """The chat template a conversation with (or without) tools is rendered with."""
        return (self.tool_chat_template or self.chat_template) if tools else self.chat_template

    def detokenizer(self, skip_special_tokens: bool = True) -> IncrementalDetokenizer:
        """A fresh streaming decoder for one generated sequence."""
        return IncrementalDetokenizer(self, skip_special_tokens)

    @functools.cached_property
    def special_token_ids(self) -> frozenset[int]:
        """Ids that ``decode(..., skip_special_tokens=True)`` drops."""
        return frozenset(i for i, token in self._backend.get_added_tokens_decoder().items() if token.special)

    @functools.cached_property
    def byte_fallback_ids(self) -> frozenset[int]:
        """Ids of ``<0xNN>`` byte tokens if the decoder reassembles them (ByteFallback), else empty.

        ByteFallback decodes a whole run of byte tokens at once and turns every byte of it into
        U+FFFD if any part is invalid UTF-8, so text from an unfinished run is not yet final.
        """
        decoder = self._backend.decoder
        if decoder is None or "ByteFallback" not in _decoder_types(json.loads(decoder.__getstate__())):
            return frozenset()
        vocab = self._backend.get_vocab(with_added_tokens=False)
        return frozenset(i for token, i in vocab.items() if _BYTE_TOKEN.fullmatch(token))


def _safe_normalizer(config: dict) -> bool:
    kind = config.get("type")
    if kind == "Replace":  # a longer pattern replaced by shorter content shrinks the text
        pattern = config.get("pattern") or {}
        return "String" in pattern and len(config.get("content", "")) >= len(pattern["String"])
    return kind in ("Prepend", "Lowercase", "NFD", "NFKD", "Append")


def _safe_pre_tokenizer(config: dict) -> bool:
    kind = config.get("type")
    if kind in ("Split", "Punctuation", "Digits"):
        return str(config.get("behavior", "Isolated")).lower() != "removed"
    return kind in ("ByteLevel", "Metaspace", "UnicodeScripts")


def _only(component: Any, children: str, safe: Any) -> bool:
    """Whether a normalizer or pre-tokenizer (None, one, or a Sequence) keeps every character."""
    if component is None:
        return True
    config = json.loads(component.__getstate__())
    parts = config.get(children) if config.get("type") == "Sequence" else [config]
    return all(safe(part) for part in parts or ())


def _decoder_types(config: dict) -> set[str]:
    types = {config.get("type")}
    for child in config.get("decoders") or ():
        types |= _decoder_types(child)
    return types


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFormatError(f"{path} is not valid JSON: {err}.") from err
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path} should hold a JSON object.")
    return data


def _token_content(value: Any) -> str | None:
    """A special token as configs spell it: a string, or an AddedToken dict with "content"."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _chat_template(folder: Path, config: dict, name: str = "default") -> str | None:
    """The folder's chat template called ``name`` ("default": the main one), or None."""
    # transformers 5 saves templates to their own files and prefers them over tokenizer_config.
    template_file = folder / ("chat_template.jinja" if name == "default" else f"additional_chat_templates/{name}.jinja")
    if template_file.is_file():
        try:
            return template_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ModelFormatError(f"{template_file} cannot be read as UTF-8 text: {err}.") from err
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": ..., "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get(name)
    elif name != "default":
        return None
    return template if isinstance(template, str) else None
