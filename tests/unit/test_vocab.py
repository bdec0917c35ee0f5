"""The device words as data (ondol/home/vocab/*.yaml): both languages name every colour the model
can write, and the generator and the replies read their words from there, not tables of their own."""

import pytest

from ondol.home.intent import COLORS
from ondol.home.replies import COLOR_NAMES
from ondol.home.vocab import LANGUAGES, vocabulary
from ondol.train.say import COLORS as SAID_COLORS


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_colour_the_model_writes_has_words(lang):
    v = vocabulary(lang)
    assert set(v.colors) == set(COLORS)
    assert all(words and all(w.strip() == w and w for w in words) for words in v.colors.values())
    assert len({w for words in v.colors.values() for w in words}) == sum(map(len, v.colors.values()))  # no word twice


def test_the_generator_and_the_replies_use_the_vocabulary():
    ko, en = vocabulary("ko"), vocabulary("en")
    for name, hex_ in COLORS.items():
        assert SAID_COLORS[name] == (list(ko.colors[name]), list(en.colors[name]))
        assert COLOR_NAMES[hex_] == (ko.color_word(name), en.color_word(name))
    assert ko.color_word("red") == "빨간색" and en.color_word("blue") == "blue"


def test_an_unknown_language_is_a_clear_error():
    with pytest.raises(ValueError, match="ko, en, not 'fr'"):
        vocabulary("fr")


def test_the_minus_words_are_read_from_the_vocabulary():
    from ondol.home.korean import number_words_to_digits, signed_numbers

    assert vocabulary("ko").minus == ("영하", "마이너스") and vocabulary("en").minus == ("minus", "negative")
    for word in vocabulary("ko").minus + vocabulary("en").minus:
        assert signed_numbers(f"{word} 20") == "-20", word
    assert number_words_to_digits("냉동실 영하 이십 도로") == "냉동실 -20 도로"
    assert number_words_to_digits("negative five degrees") == "-5 degrees"
