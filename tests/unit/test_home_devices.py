"""Device types and capabilities (ondol/home/devices.py, capabilities.py): schemas, validation
messages, relative changes and clamping, state transitions, and a property loop over random valid
states and params drawn from the schemas themselves."""

import json
import random
import re
from types import MappingProxyType

import jsonschema
import llguidance as llg
import pytest

from ondol.constrained.schema import check_schema
from ondol.home.capabilities import COLOR_PATTERN
from ondol.home.devices import ACTION_NAMES, DEVICE_TYPES, device_type
from ondol.home.errors import ActionError, HomeError

TYPES = ("light", "switch", "plug", "air_conditioner", "thermostat", "air_purifier", "fan", "washer", "dryer",
         "refrigerator", "dishwasher", "robot_vacuum", "tv", "speaker", "cover", "lock", "sensor", "scene",
         "xr_headset")
ALL_ACTIONS = [(t, a) for t in TYPES for a in DEVICE_TYPES[t].action_names()]
V = jsonschema.Draft202012Validator


def apply(type_name, action, params=None, **state):
    t = DEVICE_TYPES[type_name]
    return t.apply_action(action, params, {**t.default_state(), **state})


def refused(type_name, action, params=None, **state) -> str:
    with pytest.raises(ActionError) as err:
        apply(type_name, action, params, **state)
    return str(err.value)


def enforceable(schema: dict) -> None:
    """A schema the tool layer can hand to constrained decoding: valid JSON Schema, only keywords
    ondol enforces, and llguidance compiles it (it refuses oneOf it cannot prove disjoint, if/then...)."""
    V.check_schema(schema)
    check_schema(schema)
    assert llg.LLMatcher.validate_grammar(llg.grammar_from("json_schema", json.dumps(schema)), None) == ""


# --- drawing random valid values from a schema -----------------------------------------------------------

def draw(schema: dict, rng: random.Random):
    if "anyOf" in schema:
        return draw(rng.choice(schema["anyOf"]), rng)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        required = set(schema.get("required", ()))
        return {k: draw(s, rng) for k, s in schema["properties"].items() if k in required or rng.random() < 0.5}
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "string":
        assert schema.get("pattern") == COLOR_PATTERN
        return "#" + "".join(rng.choice("0123456789abcdefABCDEF") for _ in range(6))
    low, high = schema.get("minimum"), schema.get("maximum")
    low = low if low is not None else (high - 60 if high is not None else -30)
    high = high if high is not None else low + 60
    step = schema.get("multipleOf", 1)
    value = low + step * rng.randint(0, int((high - low) / step))
    return int(value) if kind == "integer" or float(value).is_integer() else value


# --- the types and their schemas ---------------------------------------------------------------------------

def test_every_required_type_exists_and_uses_only_the_named_actions():
    assert set(TYPES) == set(DEVICE_TYPES)
    used = {a for t in DEVICE_TYPES.values() for a in t.action_names()}
    assert used == set(ACTION_NAMES)  # every action in the issue is implemented, and nothing else


@pytest.mark.parametrize("type_name", TYPES)
def test_state_schema_is_valid_and_default_state_conforms(type_name):
    t = DEVICE_TYPES[type_name]
    schema = t.state_schema()
    enforceable(schema)
    assert schema["additionalProperties"] is False and set(schema["required"]) == set(t.attributes)
    V(schema).validate(t.default_state())
    for name, attribute in t.attributes.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name)
        if attribute.read_only:
            assert schema["properties"][name]["readOnly"] is True
        for value in attribute.schema.get("enum", ()):
            assert not isinstance(value, str) or re.fullmatch(r"[a-z][a-z0-9_]*", value)  # ids are ASCII snake_case
    assert t.state_schema() == schema and t.state_schema() is not schema  # copies: callers may edit theirs


@pytest.mark.parametrize(("type_name", "action"), ALL_ACTIONS)
def test_action_schema_is_valid_and_an_example_applies(type_name, action):
    t = DEVICE_TYPES[type_name]
    schema = t.action_schema(action)
    enforceable(schema)
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    rng = random.Random(action)
    for _ in range(5):
        params = draw(schema, rng)
        V(schema).validate(params)
        state = t.default_state()
        if action in ("pause",):
            state.update({"operational_state": "running"} if "operational_state" in state else {"playback": "playing"})
        changes = t.apply_action(action, params, state)
        V(t.state_schema()).validate({**state, **changes})


def test_kind_and_class_words_name_one_type():
    owner: dict[str, str] = {}
    for t in DEVICE_TYPES.values():
        words = list(t.kind_names) + [w for ws in t.class_names.values() for w in ws]
        assert t.kind_names, t.name
        for word in words:
            key = word.lower().replace(" ", "")
            assert owner.setdefault(key, t.name) == t.name, f"{word!r} names {owner[key]} and {t.name}"
    assert {"조명", "불", "전등", "light", "lights", "lamp"} <= set(DEVICE_TYPES["light"].kind_names)
    assert {"에어컨", "air conditioner", "ac"} <= set(DEVICE_TYPES["air_conditioner"].kind_names)
    assert "커튼" in DEVICE_TYPES["cover"].class_names["curtain"]
    assert "블라인드" in DEVICE_TYPES["cover"].class_names["blind"]


def test_registry_and_capabilities_are_read_only():
    with pytest.raises(TypeError):
        DEVICE_TYPES["toaster"] = DEVICE_TYPES["plug"]  # type: ignore[index]
    with pytest.raises(TypeError):
        DEVICE_TYPES["light"].actions["explode"] = None  # type: ignore[index]
    assert len({*DEVICE_TYPES.values(), device_type("light", "dimmable"), DEVICE_TYPES["light"]}) == len(TYPES) + 1
    schema = DEVICE_TYPES["light"].action_schema("set_brightness")
    schema["properties"].clear()
    assert DEVICE_TYPES["light"].action_schema("set_brightness")["properties"]


def test_classes_narrow_capabilities():
    contact = device_type("sensor", "contact")
    assert set(contact.attributes) == {"contact", "battery"}
    assert contact.default_state() == {"contact": "closed", "battery": 100}
    assert set(device_type("light", "dimmable").action_names()) == {"turn_on", "turn_off", "toggle", "set_brightness"}
    assert device_type("cover", "curtain") is DEVICE_TYPES["cover"]
    assert device_type("light") is DEVICE_TYPES["light"]
    with pytest.raises(HomeError, match="curtain, blind"):
        device_type("cover", "door")
    with pytest.raises(HomeError, match="light, switch"):
        device_type("toaster")


def test_complete_state_fills_defaults_and_names_problems():
    light = DEVICE_TYPES["light"]
    assert light.complete_state({"power": "on"}) == {**light.default_state(), "power": "on"}
    with pytest.raises(HomeError, match="no attribute 'volume'"):
        light.complete_state({"volume": 3})
    with pytest.raises(HomeError, match="brightness 300 is out of range: 1 to 100 %"):
        light.complete_state({"brightness": 300})
    with pytest.raises(ActionError, match="current state is invalid"):
        light.apply_action("turn_on", {}, {"power": "dim"})


# --- validation messages -----------------------------------------------------------------------------------

def test_out_of_range_names_range_and_unit():
    assert "temperature 31 is out of range: 16 to 30 °C" in refused("air_conditioner", "set_temperature", {"temperature": 31})
    assert "5 to 35 °C" in refused("thermostat", "set_temperature", {"temperature": 40})
    assert "0 to 100 %" in refused("light", "set_brightness", {"brightness": 101})
    assert "2200 to 6500 K" in refused("light", "set_color_temperature", {"color_temperature": 9000})
    assert "1 to 999" in refused("tv", "set_channel", {"channel": 0})
    assert "1 to 5" in refused("fan", "set_fan_speed", {"fan_speed": 6})
    assert "multiple of 0.5 °C" in refused("air_conditioner", "set_temperature", {"temperature": 24.3})
    # Each compartment its own range, though the schema's top level lists their union.
    assert "1 to 7 °C (fridge" in refused("refrigerator", "set_temperature", {"temperature": 10})
    assert "-23 to -15 °C (freezer" in refused("refrigerator", "set_temperature",
                                                {"compartment": "freezer", "temperature": -10})


def test_wrong_parameter_type():
    assert "'temperature' must be a number, not \"24\"" in refused("air_conditioner", "set_temperature",
                                                                  {"temperature": "24"})
    assert "'brightness' must be an integer, not true" in refused("light", "set_brightness", {"brightness": True})
    assert "'delta' must be an integer, not 1.5" in refused("light", "set_brightness", {"delta": 1.5})
    assert "'muted' must be true or false" in refused("tv", "mute", {"muted": "yes"})
    assert "must be an object" in refused("light", "turn_on", [1])
    assert "mode \"dance\" is not one of: cool, heat, dry, fan, auto, air_clean" in refused(
        "air_conditioner", "set_mode", {"mode": "dance"})
    assert "#RRGGBB" in refused("light", "set_color", {"color": "red"})


def test_unknown_missing_and_conflicting_parameters():
    assert "unknown parameter 'temp'; it takes 'temperature' and 'delta'" in refused(
        "air_conditioner", "set_temperature", {"temp": 24})
    assert "unknown parameter 'x'; it takes no parameters" in refused("switch", "turn_on", {"x": 1})
    assert "missing parameter 'mode'" in refused("air_purifier", "set_mode", {})
    assert "missing parameter: give 'temperature' or 'delta'" in refused("refrigerator", "set_temperature",
                                                                         {"compartment": "freezer"})
    assert "give either 'temperature' or 'delta', not both" in refused("air_conditioner", "set_temperature",
                                                                      {"temperature": 24, "delta": 1})
    assert "compartment \"pantry\" is not one of: fridge, freezer" in refused(
        "refrigerator", "set_temperature", {"compartment": "pantry", "delta": 1})


def test_unsupported_action_lists_the_supported_ones():
    message = refused("light", "return_to_base")
    assert message.startswith("The light does not support 'return_to_base'; it supports: turn_on, turn_off")
    assert "it supports: activate." in refused("scene", "turn_on")
    assert "'set_temperature'" in refused("tv", "set_temperature", {"temperature": 20})
    assert [t for t in TYPES if "return_to_base" in DEVICE_TYPES[t].action_names()] == ["robot_vacuum"]
    assert [t for t in TYPES if "activate" in DEVICE_TYPES[t].action_names()] == ["scene"]


def test_a_refused_action_changes_nothing():
    state = MappingProxyType(DEVICE_TYPES["washer"].default_state())  # would raise if anything wrote to it
    before = dict(state)
    for action, params in (("pause", {}), ("set_mode", {"mode": "toast"}), ("start", {"cycle": 3})):
        with pytest.raises(ActionError):
            DEVICE_TYPES["washer"].apply_action(action, params, state)
    assert dict(state) == before


# --- relative changes and clamping -------------------------------------------------------------------------

def test_setting_a_temperature_turns_the_air_conditioner_on():
    # "거실 에어컨 24도로 맞춰줘" to an air conditioner that is off: cool the room to 24 °C.
    assert apply("air_conditioner", "set_temperature", {"temperature": 22}) == {"target_temperature": 22, "power": "on"}
    assert apply("thermostat", "set_temperature", {"delta": 1}, power="off") == {"target_temperature": 23, "power": "on"}


def test_delta_is_clamped_to_the_range():
    assert apply("air_conditioner", "set_temperature", {"delta": 2}, target_temperature=29, power="on") == {"target_temperature": 30}
    assert apply("air_conditioner", "set_temperature", {"delta": -1.5}, target_temperature=24, power="on") == {"target_temperature": 22.5}
    assert apply("air_conditioner", "set_temperature", {"delta": -20}, power="on") == {"target_temperature": 16}
    assert apply("air_conditioner", "set_temperature", {"delta": 2}, target_temperature=30, power="on") == {}  # already at the top
    assert apply("thermostat", "set_temperature", {"delta": 2}, power="on") == {"target_temperature": 24}
    assert apply("light", "set_brightness", {"delta": 20}, power="on", brightness=95) == {"brightness": 100}
    assert apply("light", "set_brightness", {"delta": -50}, power="on", brightness=30) == {"brightness": 1}
    assert apply("tv", "set_volume", {"delta": -10}, volume=5, muted=True) == {"volume": 0, "muted": False}
    assert apply("tv", "set_channel", {"delta": 1}, power="on", channel=999) == {}
    assert apply("cover", "set_position", {"delta": 30}, position=80) == {"position": 100}
    assert apply("fan", "set_fan_speed", {"delta": 1}, power="on", fan_speed=5) == {}
    assert apply("light", "set_color_temperature", {"delta": -500}, color_temperature=2400) == {
        "color_temperature": 2200, "power": "on"}
    assert apply("refrigerator", "set_temperature", {"delta": 1}) == {"fridge_temperature": 4}
    assert apply("refrigerator", "set_temperature", {"compartment": "freezer", "delta": -10}) == {
        "freezer_temperature": -23}


def test_absolute_values_are_stored_as_written():
    assert apply("air_conditioner", "set_temperature", {"temperature": 22.0}, power="on") == {"target_temperature": 22}
    assert apply("light", "set_brightness", {"brightness": 40.0}) == {"brightness": 40, "power": "on"}
    assert type(apply("light", "set_brightness", {"brightness": 40.0})["brightness"]) is int


# --- semantics ---------------------------------------------------------------------------------------------

def test_power_and_light_semantics():
    assert apply("light", "turn_on") == {"power": "on"}
    assert apply("light", "turn_on", power="on") == {}
    assert apply("light", "toggle", power="on") == {"power": "off"}
    assert apply("light", "toggle") == {"power": "on"}
    assert apply("light", "set_brightness", {"brightness": 30}) == {"brightness": 30, "power": "on"}
    assert apply("light", "set_brightness", {"brightness": 0}, power="on", brightness=60) == {"power": "off"}
    assert apply("light", "set_color", {"color": "#ff8800"}) == {"color": "#FF8800", "color_mode": "color", "power": "on"}
    assert apply("light", "set_color_temperature", {"color_temperature": 3000}, power="on", color_mode="color") == {
        "color_temperature": 3000, "color_mode": "color_temperature"}
    # Settings do not power a device on; doing things does.
    assert apply("air_conditioner", "set_temperature", {"temperature": 20}, power="on") == {"target_temperature": 20}
    assert apply("air_conditioner", "set_fan_speed", {"fan_speed": "high"}) == {"fan_speed": "high"}
    assert apply("fan", "set_fan_speed", {"fan_speed": 3}) == {"fan_speed": 3, "power": "on"}
    assert apply("tv", "set_input", {"input": "hdmi2"}) == {"input": "hdmi2", "power": "on"}


def test_operational_state_transitions():
    assert apply("washer", "start", {"cycle": "wool"}) == {"cycle": "wool", "operational_state": "running", "power": "on"}
    assert apply("washer", "pause", power="on", operational_state="running") == {"operational_state": "paused"}
    assert apply("washer", "pause", power="on", operational_state="paused") == {}
    assert "it is stopped, not running" in refused("washer", "pause")
    assert apply("washer", "start", power="on", operational_state="paused") == {"operational_state": "running"}
    assert "stop it to clear the error" in refused("dryer", "start", operational_state="error")
    assert apply("dryer", "stop", operational_state="error") == {"operational_state": "stopped"}
    assert "stop it before changing the cycle" in refused("washer", "set_mode", {"mode": "quick"},
                                                         operational_state="running")
    assert "stop it before choosing another" in refused("dishwasher", "start", {"cycle": "eco"},
                                                       operational_state="paused")
    assert apply("dishwasher", "set_mode", {"mode": "eco"}) == {"cycle": "eco"}
    assert apply("washer", "turn_off", power="on", operational_state="running") == {
        "power": "off", "operational_state": "stopped"}


def test_robot_vacuum():
    assert DEVICE_TYPES["robot_vacuum"].default_state()["operational_state"] == "docked"
    assert apply("robot_vacuum", "start") == {"operational_state": "running"}
    assert apply("robot_vacuum", "return_to_base", operational_state="running") == {"operational_state": "returning"}
    assert apply("robot_vacuum", "return_to_base") == {}
    assert apply("robot_vacuum", "pause", operational_state="returning") == {"operational_state": "paused"}
    assert apply("robot_vacuum", "stop") == {}  # docked stays docked
    assert "docked, not running" in refused("robot_vacuum", "pause")
    assert apply("robot_vacuum", "set_mode", {"mode": "mop"}) == {"mode": "mop"}


def test_media_volume_channel():
    assert apply("tv", "mute") == {"muted": True}
    assert apply("tv", "mute", {"muted": False}, muted=True) == {"muted": False}
    assert apply("tv", "set_volume", {"volume": 30}, muted=True) == {"volume": 30, "muted": False}
    assert apply("speaker", "play") == {"playback": "playing", "power": "on"}
    assert apply("speaker", "next", power="on", playback="paused", track=3) == {"track": 4, "playback": "playing"}
    assert "nothing is playing" in refused("xr_headset", "pause")
    assert apply("tv", "turn_off", power="on", playback="playing") == {"power": "off", "playback": "stopped"}
    assert apply("tv", "set_channel", {"channel": 11}) == {"channel": 11, "power": "on"}


def test_cover_lock_scene_sensor():
    assert apply("cover", "open") == {"position": 100}
    assert apply("cover", "close", position=40) == {"position": 0}
    assert apply("cover", "set_position", {"position": 50}) == {"position": 50}
    assert apply("lock", "unlock") == {"lock_state": "unlocked"}
    assert apply("lock", "lock") == {}
    assert apply("scene", "activate") == {}
    assert DEVICE_TYPES["sensor"].action_names() == ()
    assert "supports: nothing" in refused("sensor", "turn_on")


# --- property loop -------------------------------------------------------------------------------------------

def _random_state(t, rng):
    return {name: draw(dict(schema), rng) for name, schema in t.state_schema()["properties"].items()}


@pytest.mark.parametrize("type_name", TYPES)
def test_random_valid_actions_leave_valid_states(type_name):
    """Any valid params on any valid state: a valid new state that touches no read-only attribute,
    or a refusal about the state (never about the params, which are valid)."""
    t = DEVICE_TYPES[type_name]
    rng = random.Random(type_name)
    state_validator = jsonschema.Draft202012Validator(t.state_schema())
    read_only = {n for n, a in t.attributes.items() if a.read_only}
    changed_somewhere: set[str] = set()
    for _ in range(150 if t.action_names() else 0):
        state = _random_state(t, rng)
        action = rng.choice(t.action_names())
        params = draw(t.action_schema(action), rng)
        t.check_params(action, params)
        try:
            changes = t.apply_action(action, params, state)
        except ActionError as err:
            assert not re.search("parameter|out of range|not one of|multiple of|support|invalid", str(err)), str(err)
            continue
        state_validator.validate({**state, **changes})
        assert not read_only & changes.keys()
        assert all(state[k] != v for k, v in changes.items())
        changed_somewhere |= changes.keys()
    # Every writable attribute is reachable by some action (scenes have none; track only grows).
    assert set(t.attributes) - read_only <= changed_somewhere
