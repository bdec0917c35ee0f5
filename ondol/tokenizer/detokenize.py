"""Streaming decode of generated tokens, one token at a time.

Decoding token by token is wrong in two ways. A character can span several tokens (Korean and emoji
are often split into byte tokens), so a single token may decode to half a character, U+FFFD. And a
token's text can depend on its neighbours: SentencePiece decoders strip the space in front of the
*first* token, so ``▁world`` decodes to "world" alone but to " world" after "hello".

The fix (as in vLLM and TGI) is to decode a short window, ``ids[prefix_offset:]``, and emit only
what it adds past ``ids[prefix_offset:read_offset]``, the tokens already emitted last time. Both
decodes see the same first token, so its context-dependent part cancels out, and the work per token
stays bounded by the window however long the output grows. Text is held back while it is not final:

* while the window ends in U+FFFD, as the next bytes may complete the character;
* while the window ends in a ByteFallback byte token: ByteFallback decodes a whole run of byte
  tokens at once and turns all of it into U+FFFD if any byte is invalid, so a run that looks
  complete can still change until a non-byte token closes it.

``flush`` emits whatever is held. Together the pieces are exactly ``tokenizer.decode(all_ids)``.
"""

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ondol.tokenizer.tokenizer import Tokenizer


class IncrementalDetokenizer:
    """Turns generated token ids into text pieces that never split a character."""

    def __init__(self, tokenizer: "Tokenizer", skip_special_tokens: bool = True):
        self._decode = functools.partial(tokenizer.decode, skip_special_tokens=skip_special_tokens)
        # decode() drops special tokens, so they are dropped here before they enter the window: a
        # window must start with a token that has text, or the leading-space strip would hit the
        # wrong token. Kept (``skip_special_tokens=False``), they are text like any other.
        self._skip = tokenizer.special_token_ids if skip_special_tokens else frozenset()
        self._byte_ids = tokenizer.byte_fallback_ids
        self._ids: list[int] = []  # the window: ids[prefix_offset:], older ids are dropped
        self._read_offset = 0  # window index of the first token not yet emitted
        self._prefix_text = ""  # decode of window[:read_offset]

    def add(self, token_id: int) -> str:
        """Take the next generated token; return the text that is now final (often "")."""
        if token_id in self._skip:
            return ""
        self._ids.append(token_id)
        if token_id in self._byte_ids:
            return ""
        return self._emit(final=False)

    def flush(self) -> str:
        """Return all text still held back (call once the sequence has ended)."""
        return self._emit(final=True)

    def _emit(self, final: bool) -> str:
        text = self._decode(self._ids)
        if len(text) <= len(self._prefix_text) or (text.endswith("\ufffd") and not final):
            return ""
        new_text = text[len(self._prefix_text) :]
        # The tokens just emitted become the next window's prefix, so the window stays short.
        del self._ids[: self._read_offset]
        self._read_offset = len(self._ids)
        self._prefix_text = self._decode(self._ids)
        return new_text
