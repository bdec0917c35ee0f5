"""The call grammar built from a home, checked token by token on the embedded model's tokenizer."""

from __future__ import annotations

import pytest

from ondol.constrained import Grammar
from ondol.constrained.grammar import GrammarCompiler
from ondol.home.assistant import EMBEDDED_MODEL
from ondol.home.cli import DEMO_HOME
from ondol.home.home import Home
from ondol.home.interpret import home_grammar
from ondol.tokenizer.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def check():
    tokenizer = Tokenizer.from_folder(EMBEDDED_MODEL)
    compiler = GrammarCompiler(tokenizer, tokenizer.vocab_size)
    with Home.load(DEMO_HOME, store="sqlite:///:memory:") as home:
        grammar = Grammar.lark(home_grammar(home))

    def accepts(text: str) -> bool:
        matcher = compiler.matcher(grammar)
        for token in tokenizer.encode(text, add_special_tokens=False):
            if not matcher.accept(token):
                return False
        return matcher.is_accepting

    return accepts


@pytest.mark.parametrize("line", [
    "set_temperature ( 거실 에어컨 ) temperature=24",
    "turn_off ( * 안방 조명 )",
    "turn_off ( * lights )",
    "get_state ( 현관문 ) ask=lock_state",
    "set_brightness ( 거실 스탠드 ) delta=-10 ; turn_on ( tv )",
    "set_temperature ( 냉장고 ) compartment=freezer,temperature=-18",
    "set_color ( 거실 조명 ) color=red",
    "set_temperature ( 거실 에어컨 ) temperature=10",  # out of range: the home refuses it, not the grammar
    "none",
])
def test_the_grammar_admits_calls_on_the_homes_names(check, line):
    assert check(line)


@pytest.mark.parametrize("line", [
    "turn_on ( 안마의자 )",                            # not a name, area or kind word of this home
    "fly ( 거실 에어컨 )",                           # no such action
    "set_temperature ( 거실 에어컨 ) warmth=24",     # no such parameter
    "turn_on ( 거실 에어컨",                         # unfinished
    "set_temperature ( 거실 에어컨 ) temperature=twenty",
])
def test_the_grammar_refuses_everything_else(check, line):
    assert not check(line)
