"""How people say things to a home, in Korean and English: verbs with their endings, values, and
the noise of real typing. The generator (ondol/train/data.py) draws from these tables.

A Korean verb is kept in two forms: the 해-form that takes endings ("켜" + "줘", "주세요", "줄래?")
and the 고-form that joins two requests ("불 끄고 TV 켜줘").
"""

from __future__ import annotations

import random

from ondol.home.korean import english_number, josa, sino_korean

# meaning -> [(해-form, 고-form)]
KO_VERBS: dict[str, list[tuple[str, str]]] = {
    "on": [("켜", "켜고"), ("켜", "켜고"), ("틀어", "틀고")],
    "off": [("꺼", "끄고")],
    "open": [("열어", "열고")],
    "close": [("닫아", "닫고")],
    "lock": [("잠가", "잠그고"), ("잠궈", "잠그고"), ("잠금해", "잠그고")],
    "unlock": [("열어", "열고"), ("잠금 해제해", "잠금 해제하고"), ("풀어", "풀고")],
    "set": [("맞춰", "맞추고"), ("설정해", "설정하고"), ("해", "하고"), ("바꿔", "바꾸고"), ("맞춰", "맞추고")],
    "up": [("올려", "올리고"), ("높여", "높이고")],
    "down": [("내려", "내리고"), ("낮춰", "낮추고")],
    "louder": [("키워", "키우고"), ("올려", "올리고")],
    "quieter": [("줄여", "줄이고"), ("낮춰", "낮추고")],
    "start": [("돌려", "돌리고"), ("시작해", "시작하고"), ("작동시켜", "작동시키고")],
    "stop": [("멈춰", "멈추고"), ("정지해", "정지하고"), ("중지해", "중지하고")],
    "pause": [("일시정지해", "일시정지하고"), ("일시 정지해", "일시 정지하고")],
    "dock": [("충전하러 보내", "충전하러 보내고"), ("복귀시켜", "복귀시키고"), ("충전기로 돌려보내", "충전기로 돌려보내고")],
    "activate": [("켜", "켜고"), ("실행해", "실행하고"), ("시작해", "시작하고")],
    "mute": [("음소거해", "음소거하고")],
    "unmute": [("음소거 해제해", "음소거 해제하고"), ("음소거 풀어", "음소거 풀고")],
    # A bare "틀어" means "on" ("TV 틀어줘"); playing names what is played ("음악 틀어줘").
    "play": [("재생해", "재생하고"), ("음악 틀어", "음악 틀고"), ("노래 틀어", "노래 틀고"), ("음악 재생해", "음악 재생하고")],
    "next": [("넘겨", "넘기고"), ("틀어", "틀고")],
}

# Endings after a 해-form, most common first; "" is the bare form ("불 꺼").
KO_ENDINGS = ["줘", "줘", " 줘", "주세요", " 주세요", "줄래?", " 줄래?", "줄래요?", "줘요", "", "", "라", "봐",
              " 줄 수 있어?", " 주실래요?", "주라", "줘!", "줘.", "줄래", " 주세요."]
KO_PREFIXES = ["", "", "", "", "좀 ", "지금 ", "얼른 ", "빨리 ", "저기 ", "음 "]

EN_PREFIXES = ["", "", "", "", "please ", "can you ", "could you ", "hey, ", "would you ", "ok ", "can you please "]
EN_SUFFIXES = ["", "", "", "", " please", ".", "!", " now", " for me", "?"]


def ko_verb(rng: random.Random, meaning: str, final: bool = True) -> str:
    """A Korean verb phrase for ``meaning``: with an ending when it ends the sentence, else the 고-form.
    A 하다 verb may end as its bare noun, as commands often do ("TV 음소거", "건조기 일시정지")."""
    hae, go = rng.choice(KO_VERBS[meaning])
    if not final:
        return go
    if hae.endswith("해") and len(hae) > 2 and rng.random() < 0.3:
        return hae[:-1].rstrip() + rng.choice(["", "", "!", "요", " 좀"])
    return hae + rng.choice(KO_ENDINGS)


def ko_object(rng: random.Random, phrase: str) -> str:
    """The target as an object: with 을/를, with 은/는, or bare (spoken Korean often drops it)."""
    r = rng.random()
    if r < 0.35:
        return josa(phrase, "을/를")
    if r < 0.42:
        return josa(phrase, "은/는")
    if r < 0.47:
        return phrase + " 좀"
    return phrase


def ko_number(rng: random.Random, n: int | float, words: float = 0.2) -> str:
    """A number as digits, or (sometimes) read as Hangul ("이십사")."""
    if isinstance(n, float) and not n.is_integer():
        return str(n)
    if rng.random() < words:
        return sino_korean(int(n))
    return str(int(n))


def en_number(rng: random.Random, n: int | float, words: float = 0.15) -> str:
    if isinstance(n, float) and not n.is_integer():
        return str(n)
    if rng.random() < words:
        return english_number(int(n)).replace("-", rng.choice(["-", " "]))
    return str(int(n))


# A polite prefix goes only before a verb: "can you turn off the fan", never "can you i want ...".
_EN_VERBS = {"turn", "switch", "set", "make", "open", "close", "lock", "unlock", "start", "stop", "pause", "run",
             "put", "change", "raise", "lower", "mute", "unmute", "dim", "brighten", "activate", "send", "dock",
             "play", "skip", "cool", "warm", "half", "max", "have"}


def en_wrap(rng: random.Random, clause: str) -> str:
    prefix = rng.choice(EN_PREFIXES) if clause.split(" ", 1)[0] in _EN_VERBS else ""
    return prefix + clause + rng.choice(EN_SUFFIXES)


def en_the(rng: random.Random, phrase: str) -> str:
    return rng.choice(["the ", "the ", "the ", "my ", "", ""]) + phrase


# --- noise -------------------------------------------------------------------------------------

_VOWEL_SWAPS = {1: 5, 5: 1, 3: 7, 7: 3, 6: 2, 2: 6, 13: 17, 17: 13}  # ㅐ/ㅔ, ㅓ/ㅕ... as typed by mistake


def typo(rng: random.Random, text: str) -> str:
    """One typing slip a person makes: a dropped space, a doubled or dropped letter, a swapped
    pair, or a Korean vowel pressed wrong (ㅐ/ㅔ, ㅓ/ㅕ)."""
    if len(text) < 4:
        return text
    kind = rng.random()
    i = rng.randrange(1, len(text) - 1)
    if kind < 0.3:
        spaces = [j for j, c in enumerate(text) if c == " "]
        return text if not spaces else (lambda j: text[:j] + text[j + 1:])(rng.choice(spaces))
    if text[i].isdigit() or text[i - 1].isdigit():
        return text  # a slip inside a number changes what was asked
    if kind < 0.45:
        return text[:i] + text[i] + text[i:]
    if kind < 0.6 and text[i].isalpha():
        return text[:i] + text[i + 1:]
    if kind < 0.75 and text[i].isalpha() and text[i + 1].isalpha():
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]
    code = ord(text[i]) - 0xAC00
    if 0 <= code < 11172:
        vowel = code % 588 // 28
        if vowel in _VOWEL_SWAPS:
            return text[:i] + chr(0xAC00 + code - vowel * 28 + _VOWEL_SWAPS[vowel] * 28) + text[i + 1:]
    return text


def squash(rng: random.Random, text: str) -> str:
    """Korean spacing as people type it: some spaces dropped ("거실불 꺼줘")."""
    words = text.split(" ")
    if len(words) < 2:
        return text
    out = words[0]
    for w in words[1:]:
        out += ("" if rng.random() < 0.3 else " ") + w
    return out


__all__ = ["KO_VERBS", "en_number", "en_the", "en_wrap", "ko_number", "ko_object", "ko_verb", "squash", "typo"]
