"""ondol's device words per language, as data: ``ondol/home/vocab/<lang>.yaml``.

Language data lives in those files, not in code, and this module is their one reader: the
generator (ondol/train/say.py), the replies and the assistant ask ``vocabulary(lang)`` rather
than keeping tables of their own, so a word is added or corrected in one place. The colour
names are the keys of ``ondol.home.intent.COLORS`` (what the model writes); each file gives the
words people say for them, the first being the one replies use.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import yaml

LANGUAGES = ("ko", "en")
_FOLDER = Path(__file__).with_name("vocab")


@dataclass(frozen=True)
class Vocabulary:
    """The words of one language. ``colors``: colour name ("red") -> words ("빨간색", "빨강");
    ``minus``: the words that make the number after them negative ("영하", "minus")."""

    language: str
    colors: Mapping[str, tuple[str, ...]]
    minus: tuple[str, ...]

    def color_word(self, name: str) -> str:
        """The word replies use for a colour."""
        return self.colors[name][0]


@functools.cache
def vocabulary(language: str) -> Vocabulary:
    if language not in LANGUAGES:
        raise ValueError(f"ondol has device words for {', '.join(LANGUAGES)}, not {language!r}.")
    data = yaml.safe_load((_FOLDER / f"{language}.yaml").read_text(encoding="utf-8"))
    colors = {str(name): tuple(str(w) for w in words) for name, words in data["colors"].items()}
    if any(not words for words in colors.values()):
        raise ValueError(f"vocab/{language}.yaml: every colour needs at least one word.")
    return Vocabulary(language, MappingProxyType(colors), tuple(str(w) for w in data["minus"]))


__all__ = ["LANGUAGES", "Vocabulary", "vocabulary"]
