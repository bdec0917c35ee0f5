"""The assistant after the model: resolving calls, validating, applying all or nothing, replying.

A scripted interpreter stands in for the model here (the model itself is scored in
tests/e2e/test_assistant.py); these tests pin the conventions of docs/assistant-conventions.md.
"""

from __future__ import annotations

import re

import pytest

from ondol.home.assistant import Assistant, detect_language
from ondol.home.home import Home
from ondol.home.intent import Call, format_calls, model_prompt, parse_calls
from ondol.home.interpret import Interpreted
from ondol.home.korean import english_number, josa, number_words_to_digits, sino_korean


class Script:
    def __init__(self) -> None:
        self.calls = "none"

    def interpret(self, text: str) -> Interpreted:
        return Interpreted(parse_calls(self.calls), self.calls)


@pytest.fixture
def demo():
    from ondol.home.cli import DEMO_HOME

    home = Home.load(DEMO_HOME, store="sqlite:///:memory:")
    script = Script()
    yield home, script, Assistant(home, interpreter=script)
    home.close()


def ask(demo, text: str, calls: str, **kw):
    home, script, assistant = demo
    script.calls = calls
    return assistant.handle(text, **kw)


def test_compact_calls_round_trip():
    line = "set_temperature ( 거실 에어컨 ) temperature=24 ; turn_off ( * 침실 조명 ) ; get_state ( 현관문 ) ask=lock_state"
    calls = parse_calls(line)
    assert calls[0] == Call("set_temperature", "거실 에어컨", {"temperature": 24})
    assert calls[1].every and calls[1].target == "침실 조명"
    assert calls[2].is_query and calls[2].params == {"ask": "lock_state"}
    assert format_calls(calls) == line
    assert parse_calls("none") == [] and format_calls([]) == "none"
    assert parse_calls("set_brightness ( 스탠드 ) delta=-10")[0].params == {"delta": -10}
    assert model_prompt(" 불 켜줘 ") == "<|user|> 불 켜줘<|calls|>"
    with pytest.raises(Exception, match="Not a call"):
        parse_calls("turn_on 거실")


def test_korean_helpers():
    assert josa("에어컨", "을/를") == "에어컨을" and josa("티비", "을/를") == "티비를"
    assert josa("현관문", "은/는") == "현관문은" and josa("스피커", "은/는") == "스피커는"
    assert josa("24도", "으로/로") == "24도로" and josa("3단", "으로/로") == "3단으로" and josa("거실 불", "으로/로") == "거실 불로"
    assert josa("TV", "을/를") == "TV를"
    assert sino_korean(24) == "이십사" and sino_korean(100) == "백" and sino_korean(-18) == "마이너스 십팔"
    assert english_number(24) == "twenty-four" and english_number(100) == "one hundred"
    assert detect_language("거실 불 꺼") == "ko" and detect_language("turn off the TV") == "en"


@pytest.mark.parametrize("said, read", [
    ("거실 에어컨 이십사 도로 맞춰줘", "거실 에어컨 24 도로 맞춰줘"),
    ("밝기 칠십 퍼센트로", "밝기 70 퍼센트로"),
    ("볼륨 삼십으로 해줘", "볼륨 30으로 해줘"),
    ("냉동실 영하 이십도로", "냉동실 -20도로"),
    ("에어컨 이십삼점오도", "에어컨 23.5도"),
    ("채널 칠번", "채널 7번"),
    ("set it to twenty-four degrees", "set it to 24 degrees"),
    ("volume one hundred", "volume 100"),
    ("이번 주 일정", "이번 주 일정"),         # "이번" is "this time", not channel 2
    ("이 불 꺼줘", "이 불 꺼줘"),             # "이" is "this"
    ("오늘 날씨 어때?", "오늘 날씨 어때?"),
    ("someone turn on the light", "someone turn on the light"),
])
def test_number_words_become_digits(said, read):
    assert number_words_to_digits(said) == read


def test_device_by_name_is_applied_and_replied_in_korean(demo):
    r = ask(demo, "거실 에어컨 24도로 맞춰줘", "set_temperature ( 거실 에어컨 ) temperature=24")
    assert r.outcome == "done" and r.applied
    assert r.to_json() == {"actions": [{"device": "ac.living", "action": "set_temperature",
                                        "params": {"temperature": 24}}],
                           "reply": "거실 에어컨을 24도로 맞췄어요.", "answer": None}
    home = demo[0]
    assert home.state("ac.living")["target_temperature"] == 24
    assert home.store.audit(home.id)[-1].utterance == "거실 에어컨 24도로 맞춰줘"


def test_every_light_in_an_area_in_english(demo):
    r = ask(demo, "turn on all the living room lights", "turn_on ( * living room lights )")
    assert [a["device"] for a in r.actions] == ["light.living_main", "light.living_stand"]
    assert r.reply == "Turned on 2 lights in the living room."
    r = ask(demo, "거실 불 다 켜줘", "turn_on ( * 거실 불 )")  # already on: valid, nothing to change
    assert r.outcome == "done" and r.reply == "거실 조명 2개는 이미 그렇게 되어 있어요."


def test_area_and_kind_without_all_means_every_such_device(demo):
    r = ask(demo, "거실 전등 꺼줘", "turn_off ( 거실 전등 )")  # no device is named "거실 전등"
    assert [a["device"] for a in r.actions] == ["light.living_main", "light.living_stand"]


def test_a_name_wins_over_area_and_kind(demo):
    r = ask(demo, "거실 불 꺼줘", "turn_off ( 거실 불 )")  # "거실 불" is light.living_main's name
    assert [a["device"] for a in r.actions] == ["light.living_main"]


def test_kind_alone_with_several_devices_asks_which(demo):
    home = demo[0]
    before = home.store.last_seq(home.id)
    r = ask(demo, "에어컨 켜줘", "turn_on ( 에어컨 )")
    assert r.outcome == "clarify" and r.actions == [] and not r.applied
    assert "거실 에어컨" in r.reply and "안방 에어컨" in r.reply
    assert home.store.last_seq(home.id) == before  # a question back is not a command: nothing audited
    assert ask(demo, "turn on the AC", "turn_on ( ac )").reply.startswith("Which one do you mean")


def test_out_of_range_is_refused_politely_and_changes_nothing(demo):
    home = demo[0]
    r = ask(demo, "에어컨 10도로 해줘", "set_temperature ( 거실 에어컨 ) temperature=10")
    assert r.outcome == "refused" and r.actions == []
    assert r.reply == "죄송해요, 거실 에어컨은 16도에서 30도 사이로만 설정할 수 있어요."
    assert home.state("ac.living")["target_temperature"] == 26
    r = ask(demo, "set the living room AC to 10", "set_temperature ( living room ac ) temperature=10")
    assert r.reply == "Sorry, living room AC only goes from 16 to 30 °C."


def test_half_valid_command_is_not_applied_half_way(demo):
    home = demo[0]
    r = ask(demo, "거실 불 켜고 냉장고 꺼줘", "turn_on ( 거실 불 ) ; turn_off ( 냉장고 )")
    assert r.outcome == "refused" and "지원하지 않아요" in r.reply
    assert home.state("light.living_main")["power"] == "off"


def test_unknown_device_is_refused(demo):
    r = ask(demo, "차고문 열어줘", "open ( 차고문 )")
    assert r.outcome == "refused" and r.reply == "죄송해요, 이 집에는 그런 기기가 없어요."


def test_question_reads_state_and_answers_in_the_users_language(demo):
    r = ask(demo, "현관문 잠겼어?", "get_state ( 현관문 ) ask=lock_state")
    assert r.outcome == "answer" and r.reply == "현관문은 잠겨 있어요."
    assert r.to_json()["answer"] == {"devices": {"lock.front_door": {"lock_state": "locked"}}}
    r = ask(demo, "is the front door locked?", "get_state ( front door ) ask=lock_state")
    assert r.reply == "The front door is locked." or r.reply == "Front door is locked."
    r = ask(demo, "거실 몇 도야?", "get_state ( 거실 ) ask=temperature")  # an area: its thermometer
    assert list(r.answer["devices"]) == ["sensor.living_climate"] and r.reply.endswith("도예요.")


def test_lock_open_means_unlock_and_chitchat_does_nothing(demo):
    home = demo[0]
    r = ask(demo, "현관문 열어줘", "open ( 현관문 )")
    assert r.actions == [{"device": "lock.front_door", "action": "unlock", "params": {}}]
    assert home.state("lock.front_door")["lock_state"] == "unlocked"
    seq = home.store.last_seq(home.id)
    r = ask(demo, "오늘 날씨 어때?", "none")
    assert r.outcome == "none" and r.actions == [] and home.store.last_seq(home.id) == seq


def test_dry_run_validates_without_applying(demo):
    home = demo[0]
    seq = home.store.last_seq(home.id)
    r = ask(demo, "TV 볼륨 조금 줄여줘", "set_volume ( tv ) delta=-10", dry_run=True)
    assert r.outcome == "done" and not r.applied and r.actions[0]["params"] == {"delta": -10}
    assert home.state("tv.living")["volume"] == 20 and home.store.last_seq(home.id) == seq


def test_colour_words_become_hex(demo):
    r = ask(demo, "거실 조명 파란색으로 바꿔줘", "set_color ( 거실 조명 ) color=blue")
    assert r.actions[0]["params"] == {"color": "#0000FF"} and r.reply == "거실 조명을 파란색으로 맞췄어요."


def test_grounding_prefers_what_was_said_verbatim():
    from ondol.home.cli import DEMO_HOME
    from ondol.home.grounding import ground
    from ondol.home.homefile import load_home_file

    spec = load_home_file(DEMO_HOME)
    # a paraphrased name: the one device name the person said wins
    assert ground(parse_calls("set_color ( 거실 조명 ) color=red"), "거실 스탠드 빨간색으로", spec) == \
        parse_calls("set_color ( 거실 스탠드 ) color=red")
    # a miscopied number: the one number said wins; a delta keeps its direction
    assert ground(parse_calls("set_volume ( 거실 tv ) volume=155"), "거실 TV 볼륨 15로", spec)[0].params == {"volume": 15}
    assert ground(parse_calls("set_volume ( tv ) delta=-10"), "TV 볼륨 5 줄여", spec)[0].params == {"delta": -5}
    assert ground(parse_calls("set_temperature ( 냉장고 ) compartment=freezer,temperature=-18"),
                  "냉동실 영하 이십 도로", spec)[0].params["temperature"] == -20
    # a sign said in words before digits keeps its sign (it was dropped: -20 became 20, refused)
    for text in ("냉동실 영하 20도로 맞춰줘", "냉동실 마이너스 20도", "set the freezer to minus 20"):
        assert ground(parse_calls("set_temperature ( 냉장고 ) compartment=freezer,temperature=-18"),
                      text, spec)[0].params["temperature"] == -20, text
        assert ground(parse_calls("set_temperature ( 냉장고 ) compartment=freezer,temperature=-20"),
                      text, spec)[0].params["temperature"] == -20, text
    # left alone: the phrase was said; no number; two numbers; a number that is part of a name
    for calls, text in [("turn_off ( * 거실 불 )", "거실 불 다 꺼"), ("set_temperature ( 에어컨 ) delta=-1", "조금 더 시원하게"),
                        ("set_volume ( tv ) delta=-10", "TV 소리 좀 줄여"),
                        ("set_temperature ( 거실 에어컨 ) temperature=24 ; set_volume ( tv ) volume=10",
                         "거실 에어컨 24도 TV 볼륨 10"),
                        ("set_temperature ( 거실 에어컨 ) temperature=10", "거실 에어컨 10도로")]:
        assert ground(parse_calls(calls), text, spec) == parse_calls(calls), text


def test_grounding_fixes_a_repeated_target_in_a_request_of_several():
    from ondol.home.cli import DEMO_HOME
    from ondol.home.grounding import ground
    from ondol.home.homefile import load_home_file

    spec = load_home_file(DEMO_HOME)
    calls = ground(parse_calls("lock ( front door ) ; turn_off ( front door )"),
                   "lock the front door and turn off the entrance light", spec)
    assert [c.target for c in calls] == ["front door", "entrance light"]


def test_a_refusal_the_device_state_gives_is_said_in_korean(demo):
    home = demo[0]
    r = ask(demo, "티비 일시정지해 줘", "pause ( 티비 )")
    assert r.outcome == "refused" and r.reply == "죄송해요, 거실 티비는 지금 재생 중인 게 없어요."
    assert ask(demo, "pause the tv", "pause ( tv )").reply == "Sorry, I can't do that: pause refused for the TV: nothing is playing."
    assert ask(demo, "세탁기 울 코스로 시작해", "start ( 세탁기 ) cycle=wool").outcome == "done"
    r = ask(demo, "세탁기 쾌속으로 바꿔줘", "set_mode ( 세탁기 ) mode=quick")
    assert r.reply == "죄송해요, 세탁기는 지금 작동 중이에요. 코스는 멈춘 뒤에 바꿀 수 있어요."
    assert home.state("washer.utility")["cycle"] == "wool"
    assert not re.search("[A-Za-z]", r.reply)
