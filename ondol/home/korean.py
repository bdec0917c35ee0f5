"""Small pieces of Korean (and English) the assistant and its data generator both need:
particles that agree with the word before them, and numbers written as words.

Korean particles change form with the last sound of the word they follow: 에어컨**을** / 티비**를**,
현관문**은** / 도어락**은** / 스피커**는**, 24도**로** / 3단**으로** (ㄹ takes 로). A word ending
in Latin letters or digits is judged by how it is read ("TV를", "3을" read 삼).
"""

from __future__ import annotations

HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3
_DIGIT_BATCHIM = {"0": True, "1": True, "2": False, "3": True, "4": False, "5": False, "6": True, "7": True,
                  "8": True, "9": False}  # 영 일 이 삼 사 오 육 칠 팔 구
_DIGIT_RIEUL = {"1", "7", "8"}  # 일 칠 팔 end in ㄹ
# Latin words ending in these letters are read with a final consonant ("TV" 티비 does not; "AC"
# 에이씨 does not; "lamp" 램프 does not): only a few end in one, so the default is none.
_LATIN_BATCHIM = {"m", "n", "l", "ng"}


def is_hangul(ch: str) -> bool:
    return HANGUL_FIRST <= ord(ch) <= HANGUL_LAST


def has_hangul(text: str) -> bool:
    return any(is_hangul(c) for c in text)


def _final(word: str) -> tuple[bool, bool]:
    """(has a final consonant, that consonant is ㄹ) for the word's last readable character."""
    for ch in reversed(word.strip()):
        if is_hangul(ch):
            jong = (ord(ch) - HANGUL_FIRST) % 28
            return jong != 0, jong == 8
        if ch.isdigit():
            return _DIGIT_BATCHIM[ch], ch in _DIGIT_RIEUL
        if ch.isalpha():
            low = word.strip().lower()
            return any(low.endswith(e) for e in _LATIN_BATCHIM), low.endswith("l")
        if ch in "%":
            return False, False  # 퍼센트
        if ch in "°":
            return False, False
    return False, False


def josa(word: str, pair: str) -> str:
    """``word`` with the particle ``pair`` ("을/를", "은/는", "이/가", "과/와", "으로/로") in the form
    its last sound takes."""
    after_consonant, after_vowel = pair.split("/")
    batchim, rieul = _final(word)
    if pair == "으로/로":
        return word + ("로" if not batchim or rieul else "으로")
    return word + (after_consonant if batchim else after_vowel)


_SINO_DIGITS = ["", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"]
_NATIVE = {1: "한", 2: "두", 3: "세", 4: "네", 5: "다섯", 6: "여섯", 7: "일곱", 8: "여덟", 9: "아홉", 10: "열"}


def sino_korean(n: int) -> str:
    """24 -> 이십사, 100 -> 백, 0 -> 영, -5 -> 마이너스 오 (numbers as read in "이십사 도")."""
    if n < 0:
        return "마이너스 " + sino_korean(-n)
    if n == 0:
        return "영"
    out = []
    for value, unit in ((1000, "천"), (100, "백"), (10, "십")):
        d = n // value % 10
        if d:
            out.append(("" if d == 1 else _SINO_DIGITS[d]) + unit)
    out.append(_SINO_DIGITS[n % 10])
    return "".join(out)


def native_korean(n: int) -> str | None:
    """1..10 as counted ("한 단계", "두 칸"); None beyond."""
    return _NATIVE.get(n)


_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def english_number(n: int) -> str:
    """24 -> twenty-four, 100 -> one hundred, -18 -> minus eighteen."""
    if n < 0:
        return "minus " + english_number(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else "")
    rest = n % 100
    return _ONES[n // 100] + " hundred" + (" " + english_number(rest) if rest else "")


# --- number words to digits ----------------------------------------------------------------------
# "이십사 도", "칠십 퍼센트", "삼십으로", "twenty-four degrees" -> digits, before the embedded model
# reads the request: spelling numbers out is how speech-to-text and some people write them, and a
# rule reads them exactly, where a small model would have to learn Korean numerals from examples.
import re  # noqa: E402

from ondol.home.vocab import vocabulary  # noqa: E402

_SINO = {"영": 0, "공": 0, "일": 1, "이": 2, "삼": 3, "사": 4, "오": 5, "육": 6, "칠": 7, "팔": 8, "구": 9}
_SINO_UNITS = {"십": 10, "백": 100, "천": 1000}
_KO_MINUS = "|".join(map(re.escape, vocabulary("ko").minus))  # 영하|마이너스, from ondol/home/vocab/ko.yaml
_EN_MINUS = "|".join(map(re.escape, vocabulary("en").minus))
_KO_NUMBER = re.compile(rf"(?<![가-힣])((?:{_KO_MINUS}) ?)?([영공일이삼사오육칠팔구십백천]+)(?:점([영공일이삼사오육칠팔구]))?"
                        r"(?= ?(도|퍼센트|프로|%|번|단|분|으로|로|까지|에|$|\s))")
_EN_WORDS = {w: i for i, w in enumerate(_ONES)} | {w: 10 * i for i, w in enumerate(_TENS) if w}
_EN_WORD = "(?:" + "|".join(sorted(_EN_WORDS, key=len, reverse=True)) + "|hundred)"
_EN_NUMBER = re.compile(rf"\b((?:{_EN_MINUS}) )?({_EN_WORD}(?:[ -]{_EN_WORD})*)\b")


def _sino_value(word: str) -> int | None:
    total, digit = 0, None
    for ch in word:
        if ch in _SINO:
            if digit is not None:
                return None  # two digits in a row ("이삼") is not how numbers are read
            digit = _SINO[ch]
        else:
            total += (1 if digit is None else digit) * _SINO_UNITS[ch]
            digit = None
    return total + (digit or 0)


def _ko_number(m: re.Match[str]) -> str:
    sign, word, tenth, follower = m.group(1), m.group(2), m.group(3), m.group(4)
    single_ok = follower in ("도", "퍼센트", "프로", "%", "단") or (follower == "번" and word != "이")  # not "이번"
    if len(word) < 2 and not tenth and not single_ok:
        return m.group(0)  # "이", "오", "사" alone are words far more often than numbers
    value = _sino_value(word)
    if value is None:
        return m.group(0)
    return f"{'-' if sign else ''}{value}" + (f".{_SINO[tenth]}" if tenth else "")


def _en_number(m: re.Match[str]) -> str:
    words = m.group(2).replace("-", " ").split()
    total, current = 0, 0
    for w in words:
        if w == "hundred":
            current = max(current, 1) * 100
        else:
            current += _EN_WORDS[w]
    total += current
    return f"{'-' if m.group(1) else ''}{total}"


_SIGN_WORD = re.compile(rf"(?:(?<![가-힣])(?:{_KO_MINUS})|\b(?:{_EN_MINUS})) ?(?=\d)", re.IGNORECASE)


def signed_numbers(text: str) -> str:
    """Sign words before digits as a minus sign: "영하 20도" -> "-20도", "minus 5" -> "-5" (for
    reading the numbers a person said; number words are ``number_words_to_digits``'s)."""
    return _SIGN_WORD.sub("-", text)


def number_words_to_digits(text: str) -> str:
    """Sino-Korean and English number words as digits: "이십사 도로" -> "24 도로", "영하 이십" ->
    "-20", "twenty-four degrees" -> "24 degrees". Native Korean counting words ("한 번") and lone
    syllables that are usually words ("이", "오") are left alone."""
    text = _KO_NUMBER.sub(_ko_number, text)
    return _EN_NUMBER.sub(_en_number, text)


__all__ = ["english_number", "number_words_to_digits", "signed_numbers", "has_hangul", "is_hangul", "josa", "native_korean", "sino_korean"]
