"""The home file: valid files (YAML and JSON) parse and round-trip; every problem names its line."""

import json
import textwrap

import pytest
import yaml

from ondol.home.errors import HomeFileError
from ondol.home.homefile import DeviceSpec, HomeSpec, load_home_file, parse_home

DEMO = textwrap.dedent("""\
    home: demo
    language: ko
    areas:
      - id: living_room
        names: [거실, living room]
      - id: bedroom
        names: [안방, master bedroom]
    devices:
      - id: ac.living
        type: air_conditioner
        names: [거실 에어컨, 에어컨, living room AC]
        area: living_room
        state: {power: off, target_temperature: 26, mode: cool}
      - id: light.bedroom
        type: light
        names: [안방 불, bedroom light]
        area: bedroom
        state:
          power: on
          brightness: 40
      - id: curtain.bedroom
        type: cover
        names: [안방 커튼]
        area: bedroom
        device_class: curtain
      - id: light.hall
        type: light
    """)


def problem(text: str, filename: str = "demo.yaml") -> str:
    with pytest.raises(HomeFileError) as info:
        parse_home(text, filename)
    return str(info.value)


def test_valid_yaml():
    spec = parse_home(DEMO, "demo.yaml")
    assert (spec.home, spec.language) == ("demo", "ko")
    assert spec.area("living_room").names == ("거실", "living room")
    ac = spec.device("ac.living")
    assert (ac.type, ac.area, ac.device_class) == ("air_conditioner", "living_room", None)
    assert ac.names == ("거실 에어컨", "에어컨", "living room AC")
    # YAML 1.1 would read `off` / `on` as booleans; in a home file they are the strings.
    assert ac.state["power"] == "off" and spec.device("light.bedroom").state["power"] == "on"
    assert ac.state["target_temperature"] == 26 and ac.state["mode"] == "cool"
    assert spec.device("curtain.bedroom").device_class == "curtain"
    hall = spec.device("light.hall")
    assert (hall.names, hall.area) == ((), None)


def test_state_is_merged_over_the_type_defaults():
    from ondol.home.devices import DEVICE_TYPES

    ac = parse_home(DEMO).device("ac.living")
    defaults = DEVICE_TYPES["air_conditioner"].default_state()
    assert set(ac.state) == set(defaults)
    assert {k: v for k, v in ac.state.items() if v != defaults[k]} == {"target_temperature": 26} | (
        {"power": "off"} if defaults["power"] != "off" else {})
    assert dict(parse_home(DEMO).device("light.hall").state) == DEVICE_TYPES["light"].default_state()


def test_spec_is_frozen():
    spec = parse_home(DEMO)
    with pytest.raises(AttributeError):
        spec.home = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.devices[0].state["power"] = "on"  # type: ignore[index]


def test_yaml_and_json_round_trip(tmp_path):
    spec = parse_home(DEMO)
    as_yaml = yaml.safe_dump(spec.to_dict(), allow_unicode=True, sort_keys=False)
    assert parse_home(as_yaml) == spec
    path = tmp_path / "home.json"
    path.write_text(json.dumps(spec.to_dict(), ensure_ascii=False, indent="\t"), encoding="utf-8")
    assert load_home_file(path) == spec  # tab-indented JSON, which plain PyYAML refuses
    path.write_text(json.dumps(spec.to_dict()), encoding="utf-8")  # ASCII escapes, one line
    assert load_home_file(path) == spec
    assert isinstance(spec, HomeSpec) and all(isinstance(d, DeviceSpec) for d in spec.devices)


def test_yaml_1_1_gotchas_are_plain_text():
    spec = parse_home(textwrap.dedent("""\
        home: gotchas
        language: en
        devices:
          - id: 1
            type: light
            names: [no, yes, off, 1.5, 010, 1:30, 2024-01-01, True]
            state: {power: off, brightness: 010}
          - id: "0x1f"
            type: light
        """))
    first, second = spec.devices
    assert first.id == "1" and second.id == "0x1f"
    assert first.names == ("no", "yes", "off", "1.5", "010", "1:30", "2024-01-01", "True")
    assert first.state["power"] == "off"
    assert first.state["brightness"] == 10  # YAML 1.2: decimal, not the octal 8
    # explicit booleans are booleans, and the message says what to write instead
    msg = problem('home: h\ndevices:\n  - id: x\n    type: light\n    state: {power: false}\n')
    assert msg == 'demo.yaml:5: device "x": state "power": false is not one of: "on", "off" (write "on" or "off")'


def test_language_no_is_the_word_no():
    msg = problem("home: h\nlanguage: no\ndevices: []\n")
    assert msg == 'demo.yaml:2: language "no" is not supported; use one of: ko, en'


def test_unknown_type_names_line_and_suggests():
    text = DEMO.replace("type: air_conditioner", "type: aircon")
    msg = problem(text)
    assert msg.startswith('demo.yaml:10: device "ac.living": unknown type "aircon"; did you mean "air_conditioner"?')
    assert "known types: " in msg and "light" in msg


def test_duplicate_ids():
    msg = problem(DEMO + "  - id: ac.living\n    type: light\n")
    assert msg == 'demo.yaml:28: device "ac.living" is defined twice (first on line 9)'
    msg = problem(DEMO.replace("id: bedroom", "id: living_room"))
    assert msg.startswith('demo.yaml:6: area "living_room" is defined twice (first on line 4)')


def test_unknown_area():
    msg = problem(DEMO.replace("area: living_room", "area: 거실"))
    assert msg == 'demo.yaml:12: device "ac.living": unknown area "거실"; write its id: "living_room"'
    msg = problem(DEMO.replace("area: living_room", "area: living_rom"))
    assert msg.startswith('demo.yaml:12: device "ac.living": unknown area "living_rom"; did you mean "living_room"?')


def test_state_outside_the_schema():
    msg = problem(DEMO.replace("target_temperature: 26", "target_temperature: 45"))
    assert msg == 'demo.yaml:13: device "ac.living": state "target_temperature": 45 is above the maximum 30'
    msg = problem(DEMO.replace("mode: cool", "mode: cold"))
    assert msg.startswith('demo.yaml:13: device "ac.living": state "mode": "cold" is not one of: "cool"')
    assert msg.endswith('; did you mean "cool"?')
    msg = problem(DEMO.replace("brightness: 40", "brightness: bright"))
    assert msg == 'demo.yaml:20: device "light.bedroom": state "brightness": expected integer, got "bright"'
    msg = problem(DEMO.replace("brightness: 40", "brightnes: 40"))
    assert msg.startswith('demo.yaml:20: device "light.bedroom": light has no state "brightnes"; '
                          'did you mean "brightness"?')


def test_keys_and_classes():
    msg = problem(DEMO.replace("language: ko", "langauge: ko"))
    assert msg.startswith('demo.yaml:2: the home file: unknown key "langauge"; did you mean "language"?')
    msg = problem(DEMO.replace("device_class: curtain", "device_class: curtian"))
    assert msg.startswith('demo.yaml:25: device "curtain.bedroom": device_class "curtian" is not a class of cover; '
                          'did you mean "curtain"?')
    msg = problem(DEMO.replace("  - id: light.hall\n    type: light\n", "  - id: light.hall\n    type: tv\n"
                               "    device_class: curtain\n"))
    assert msg == 'demo.yaml:28: device "light.hall": device_class "curtain" is not a class of tv (allowed: none (leave it out))'
    # a class narrows the state: an on/off light has no brightness
    msg = problem(DEMO.replace("  - id: light.hall\n    type: light\n", "  - id: light.hall\n    type: light\n"
                               "    device_class: on_off\n    state: {brightness: 50}\n"))
    assert msg.startswith('demo.yaml:29: device "light.hall": light has no state "brightness" (its state: power)')
    msg = problem("home: h\ndevices:\n  - id: c\n    type: curtain\n")
    assert msg.startswith('demo.yaml:4: device "c": unknown type "curtain"; did you mean "cover" with device_class "curtain"?')
    msg = problem(DEMO.replace("    area: bedroom\n    device_class", "    area: bedroom\n    area: bedroom\n    device_class"))
    assert msg == 'demo.yaml:25: device "curtain.bedroom": key "area" appears twice (first on line 24)'
    assert problem("home: h\n") == 'demo.yaml:1: the home file: missing "devices"'
    assert problem("devices: []\n") == 'demo.yaml:1: the home file: missing "home"'
    assert problem("home: h\ndevices:\n  - type: light\n") == 'demo.yaml:3: a device: missing "id"'


def test_ids_and_names():
    assert problem("home: My Home\ndevices: []\n") == (
        "demo.yaml:1: home \"My Home\" is not a valid id: lower-case ASCII letters, digits, '_' and '-'")
    msg = problem("home: h\ndevices:\n  - id: 거실불\n    type: light\n")
    assert msg.startswith('demo.yaml:3: device id "거실불" is not a valid id')
    msg = problem("home: h\ndevices:\n  - id: a\n    type: light\n    names: [불, '', '!!']\n")
    assert msg == ('demo.yaml:5: device "a": a name is empty\n'
                   'demo.yaml:5: device "a": name "!!" has no letters or digits')
    # a name may be shared by two devices (resolution asks which), but not be another device's id
    msg = problem("home: h\ndevices:\n  - id: a\n    type: light\n  - id: b\n    type: light\n    names: [x, A]\n")
    assert msg == 'demo.yaml:7: device "b": name "A" is the id of device "a"'
    parse_home("home: h\ndevices:\n  - {id: a, type: light, names: [스탠드]}\n  - {id: b, type: light, names: [스탠드]}\n")
    msg = problem(DEMO.replace("[안방, master bedroom]", "[안방, 거실]"))
    assert msg == 'demo.yaml:7: area "bedroom": name "거실" is already used by area "living_room"'


def test_all_problems_reported_in_line_order():
    text = DEMO.replace("type: aircon", "").replace("mode: cool", "mode: cold").replace("language: ko", "language: fr")
    text = text.replace("area: bedroom\n    device_class: curtain", "area: garage\n    device_class: curtain")
    msg = problem(text)
    lines = msg.splitlines()
    assert [line.split(":")[1] for line in lines] == ["2", "13", "24"]
    assert all(line.startswith("demo.yaml:") for line in lines)


def test_syntax_errors_and_empty_files(tmp_path):
    msg = problem("home: h\ndevices:\n  - id: a\n   type: light\n")
    assert msg.startswith("demo.yaml:4: invalid YAML: ")
    assert problem("") == "demo.yaml:1: the file is empty; it needs at least 'home:' and 'devices:'"
    assert problem('{"home": "h",\n "devices": [}\n', "home.json").startswith("home.json:2: invalid JSON: ")
    assert problem("- a\n- b\n").startswith("demo.yaml:1: the home file must be a mapping")


def test_unsafe_tags_are_refused():
    text = 'home: h\ndevices:\n  - id: a\n    type: light\n    state: {brightness: !!python/object/apply:os.system ["echo pwned"]}\n'
    msg = problem(text)
    assert msg == ('demo.yaml:5: device "a": state "brightness": '
                   "unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'")


def test_numbers():
    light = 'home: h\ndevices:\n  - id: a\n    type: light\n    state: {brightness: %s}\n'
    value = parse_home(light % "1e2").device("a").state["brightness"]
    assert value == 100 and type(value) is int  # YAML 1.1 would read "1e2" as text
    assert problem(light % ".nan") == 'demo.yaml:5: device "a": state "brightness": .nan is not a finite number'
    assert parse_home(light % "0x10").device("a").state["brightness"] == 16
    assert problem(light % "1_000") == 'demo.yaml:5: device "a": state "brightness": expected integer, got "1_000"'


def test_unquoted_scalar_meant_as_text():
    # An enum of digit strings ("1", "2") written unquoted: YAML says int, the schema says text.
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Stepped:
        name: str = "stepped"

        def state_schema(self):
            return {"type": "object", "properties": {"step": {"enum": ["1", "2"]}}, "additionalProperties": False}

        def default_state(self):
            return {"step": "1"}

    spec = parse_home("home: h\ndevices:\n  - {id: a, type: stepped, state: {step: 2}}\n", types={"stepped": Stepped()})
    assert spec.device("a").state["step"] == "2"


def test_load_home_file_errors(tmp_path):
    with pytest.raises(HomeFileError, match="no home file at"):
        load_home_file(tmp_path / "missing.yaml")
    path = tmp_path / "home.yaml"
    path.write_bytes("home: h\ndevices: []\n# \xff\n".encode("latin-1"))
    with pytest.raises(HomeFileError, match=r"home.yaml:3: the file is not UTF-8"):
        load_home_file(path)
    path.write_text("\ufeffhome: h\ndevices:\n  - id: a\n    type: lamp\n", encoding="utf-8")
    with pytest.raises(HomeFileError) as info:
        load_home_file(path)
    assert str(info.value).startswith(f'{path}:4: device "a": unknown type "lamp"; did you mean "light"?')
    assert info.value.problems[0][0] == 4


LAUGHS = "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + LAUGHS  # 9**9 values in under 1 KB


@pytest.mark.parametrize("text, problem", [
    (BOMB + "home: demo\ndevices:\n  - {id: light.a, type: light, names: [조명], state: {power: *i}}\n",
     "holds more than 100000 values once its YAML aliases"),
    ("home: demo\nx: &x [*x]\ndevices: []\n", "alias refers to the value that contains it"),
    ("home: demo\nx: &x 1\nxs: [" + ", ".join(["*x"] * 1001) + "]\ndevices: []\n", "more than 1000 YAML aliases"),
    ("home: demo\ndevices: " + "[" * 50_000 + "]" * 50_000 + "\n", "nested more than 32 deep"),
    ('{"home": "demo", "devices": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested more than 32 deep"),
    ("home: demo\ndevices:\n" + "".join("  " * i + "- \n" for i in range(1, 200)), "nested more than 32 deep"),
])
def test_hostile_files_are_refused_quickly_in_one_short_line(text, problem):
    """A 1 KB alias bomb once took 135 s and 4 GB; a 50,000-deep file gave a traceback."""
    assert len(BOMB) < 1024
    with pytest.raises(HomeFileError) as err:
        parse_home(text, "bomb.yaml")
    message = str(err.value)
    assert problem in message and "\n" not in message and len(message) < 400


def test_a_long_bad_value_is_quoted_short():
    """Every problem is one line of bounded length, whatever the value it quotes."""
    text = DEMO.replace("brightness: 40", "brightness: [" + ", ".join(["매우 밝게"] * 20_000) + "]")
    with pytest.raises(HomeFileError) as err:
        parse_home(text, "home.yaml")
    assert all(len(line) < 400 for line in str(err.value).splitlines())
    assert "home.yaml:" in str(err.value) and "brightness" in str(err.value)


def test_a_few_plain_aliases_still_work():
    text = DEMO.replace("names: [안방 불, bedroom light]", "names: &bed [안방 불, bedroom light]") + \
        "  - {id: light.bed2, type: light, names: [안방 스탠드], area: bedroom, state: {power: on}}\n"
    home = parse_home(text, "home.yaml")
    assert home.device("light.bedroom").names == ("안방 불", "bedroom light")


def test_depth_reached_through_aliases_is_bounded():
    """An anchor first met shallow, then aliased deep: the expanded depth is what counts."""
    nest = "[" * 25 + "x" + "]" * 25
    text = (f"home: demo\ndefs: &a {nest}\ndeep: {'[' * 25}*a{']' * 25}\nshallow: *a\n"
            "devices: []\n")
    with pytest.raises(HomeFileError, match="nested more than 32 deep"):
        parse_home(text, "deep.yaml")
    chain = "home: demo\n" + "".join(f"a{i}: &a{i} [[[[[[[[[[*a{i - 1}]]]]]]]]]]\n" if i else "a0: &a0 x\n"
                                     for i in range(60)) + "devices: []\n"
    with pytest.raises(HomeFileError, match="nested more than 32 deep"):
        parse_home(chain, "chain.yaml")
