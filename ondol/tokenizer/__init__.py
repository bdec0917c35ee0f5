"""Text <-> token ids for ondol: Hugging Face folders and GGUF vocabularies, chat templates, streaming decode."""

from ondol.tokenizer.chat import render_chat_template
from ondol.tokenizer.detokenize import IncrementalDetokenizer
from ondol.tokenizer.gguf_vocab import tokenizer_from_gguf_fields
from ondol.tokenizer.tokenizer import Tokenizer

__all__ = ["IncrementalDetokenizer", "Tokenizer", "render_chat_template", "tokenizer_from_gguf_fields"]
