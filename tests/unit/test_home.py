"""Home: the one writer. Targets by Korean/English names, relative changes, all-or-nothing
commands, unreachable devices, persistence, derived tool schemas, and 1,000 random requests."""

from __future__ import annotations

import json
import random
from pathlib import Path

import jsonschema
import pytest

from ondol.constrained import Grammar, GrammarCompiler
from ondol.constrained.schema import check_schema
from ondol.home.drivers.simulator import SimulatorDriver
from ondol.home.home import Home
from ondol.home.store import Store
from ondol.tokenizer import Tokenizer

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo-home.yaml"


@pytest.fixture
def home(tmp_path):
    with Home.load(DEMO, store=f"sqlite:///{tmp_path / 'home.db'}") as h:
        yield h


def test_demo_home_is_big_enough(home):
    assert len(home.spec.devices) >= 25 and len(home.spec.areas) >= 6
    assert {d["type"] for d in home.devices()} >= {"light", "air_conditioner", "tv", "washer", "lock", "scene"}


def test_names_relative_changes_and_clamping(home):
    r = home.apply({"action": "set_temperature", "target": {"device": "거실에어컨을"}, "params": {"temperature": 24}})
    assert r.ok and home.state("ac.living")["target_temperature"] == 24
    home.apply({"action": "set_temperature", "target": {"device": "living room AC"}, "params": {"delta": 2}})
    assert home.state("거실 에어컨")["target_temperature"] == 26
    r = home.apply({"action": "set_temperature", "target": {"device": "ac.living"}, "params": {"delta": 10}})
    assert r.ok and home.state("ac.living")["target_temperature"] == 30  # clamped to the range, not refused
    r = home.apply({"action": "set_temperature", "target": {"device": "ac.living"}, "params": {"temperature": 35}})
    assert not r.ok and "16 to 30" in r.error and home.state("ac.living")["target_temperature"] == 30


def test_area_kind_and_whole_home_targets(home):
    home.apply({"action": "turn_on", "target": {"kind": "조명"}})
    lights = home.query({"kind": "light"})
    assert len(lights) >= 6 and all(s["power"] == "on" for s in lights.values())
    r = home.apply({"action": "turn_off", "target": {"area": "거실", "kind": "불"}})
    assert r.ok and {x["device"] for x in r.results} == {"light.living_main", "light.living_stand"}
    assert home.state("light.kitchen")["power"] == "on" and home.state("거실 스탠드")["power"] == "off"


def test_a_command_is_all_or_nothing(home):
    before = home.query()
    r = home.apply([{"action": "turn_on", "target": {"device": "거실 조명"}},
                    {"action": "set_brightness", "target": {"device": "주방 조명"}, "params": {"brightness": 170}}])
    assert not r.ok and home.query() == before
    assert r.results[0]["error"].startswith("not applied") and "100" in r.results[1]["error"]
    audit = home.store.audit(home.id, limit=1)[0]
    assert audit.seq == r.seq and audit.results[1]["ok"] is False


def test_unreachable_device_changes_nothing_and_others_are_undone(tmp_path):
    driver = SimulatorDriver(unreachable={"light.kitchen"})
    with Home.load(DEMO, store=f"sqlite:///{tmp_path / 'h.db'}", driver=driver) as home:
        before = home.query()
        r = home.apply({"action": "turn_on", "target": {"kind": "light"}})
        assert not r.ok and "light.kitchen" in r.error and home.query() == before
        undo = driver.sent[-1][1]  # the lights that took the change were switched back
        assert "light.kitchen" not in undo and all(c == {"power": "off"} for c in undo.values())


def test_state_survives_a_restart(store_url):  # SQLite and the real PostgreSQL
    url = store_url
    with Home.load(DEMO, store=url) as home:
        home.apply({"action": "set_channel", "target": {"device": "거실 TV"}, "params": {"channel": 11}},
                   source="assistant", utterance="티비 11번 틀어줘")
    with Home.load(DEMO, store=url) as home:
        assert home.state("tv.living")["channel"] == 11
        last = home.store.audit(home.id, limit=1)[0]
        assert (last.source, last.utterance) == ("assistant", "티비 11번 틀어줘")


@pytest.fixture(scope="module")
def compiler(tiny_model_dir):
    tok = Tokenizer.from_folder(tiny_model_dir)
    return GrammarCompiler(tok, tok.vocab_size)


def test_tool_schemas_hold_real_names_and_ranges(home, compiler):
    tools = {t["function"]["name"]: t["function"]["parameters"] for t in home.tools()}
    assert {"turn_on", "set_temperature", "set_channel", "activate", "get_state"} <= set(tools)
    for schema in tools.values():
        check_schema(schema)
        jsonschema.Draft202012Validator.check_schema(schema)
        compiler.compile(Grammar.json_schema(schema))
    ok = {"target": {"device": "거실 에어컨"}, "params": {"temperature": 24}}
    jsonschema.validate(ok, tools["set_temperature"])
    for bad in ({"target": {"device": "화성 에어컨"}, "params": {"temperature": 24}},   # no such device
                {"target": {"device": "거실 에어컨"}, "params": {"temperature": 40}},   # out of the AC's range
                {"target": {"device": "거실 조명"}, "params": {"temperature": 24}}):    # a light has no temperature
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, tools["set_temperature"])
    # The thermostat's own range is in its branch: 5 °C is fine for it, not for an air conditioner.
    jsonschema.validate({"target": {"device": "아이방 난방"}, "params": {"temperature": 5}}, tools["set_temperature"])


def _value(rng: random.Random, schema: dict):
    """A value the schema allows (for the shapes action schemas use)."""
    if "anyOf" in schema:
        return _value(rng, rng.choice(schema["anyOf"]))
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        keys = set(schema.get("required", ())) | {k for k in props if rng.random() < 0.5}
        return {k: _value(rng, props[k]) for k in props if k in keys}
    if kind in ("integer", "number"):
        lo, hi = schema.get("minimum", -5), schema.get("maximum", 5)
        return rng.randint(int(lo) if lo == int(lo) else int(lo) + 1, int(hi))
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "string" and "pattern" in schema:
        return f"#{rng.randrange(1 << 24):06X}"
    return "x"


def _valid_request(rng: random.Random, home: Home) -> dict:
    device = rng.choice(home.spec.devices)
    dtype = home.types[device.id]
    if not dtype.action_names():
        return {"action": "turn_on", "target": {"device": device.id}, "params": {}}
    action = rng.choice(dtype.action_names())
    name = rng.choice([device.id, *device.names])
    return {"action": action, "target": {"device": name}, "params": _value(rng, dtype.action_schema(action))}


def _random_request(rng: random.Random, home: Home, tools: dict) -> dict:
    if rng.random() < 0.5:
        return _valid_request(rng, home)
    names = [n for d in home.spec.devices for n in d.names] + ["화성 에어컨", "nothing"]
    areas = [n for a in home.spec.areas for n in a.names] + ["지하실"]
    kinds = ["조명", "불", "에어컨", "light", "TV", "커튼", "로켓"]
    action = rng.choice([*tools, "explode", "set_temperature", "set_brightness", "turn_on", "turn_off"])
    shape = rng.random()
    target = ({"device": rng.choice(names)} if shape < 0.6 else
              {"area": rng.choice(areas), "kind": rng.choice(kinds)} if shape < 0.85 else {"kind": rng.choice(kinds)})
    params = rng.choice([{}, {"temperature": rng.randint(0, 40)}, {"delta": rng.randint(-5, 5)},
                         {"brightness": rng.randint(-10, 120)}, {"mode": rng.choice(["cool", "heat", "turbo", "x"])},
                         {"channel": rng.randint(0, 1200)}, {"volume": rng.randint(-5, 105)}, {"position": 50},
                         {"temperature": "hot"}, {"muted": True}])
    return {"action": action, "target": target, "params": params}


def _spelled(schema, key: str) -> set:
    """Every enum value the schema gives a property called ``key``, anywhere in it."""
    if isinstance(schema, list):
        return {v for x in schema for v in _spelled(x, key)}
    if not isinstance(schema, dict):
        return set()
    found = set(schema.get("properties", {}).get(key, {}).get("enum", ()))
    return found | {v for x in schema.values() for v in _spelled(x, key)}


def test_1000_random_requests():
    home = Home.load(DEMO, store="sqlite:///:memory:")  # in memory: 1,000 fsyncs are not what is tested
    rng = random.Random(7)
    tools = {t["function"]["name"]: t["function"]["parameters"] for t in home.tools()}
    validators = {name: jsonschema.Draft202012Validator(schema) for name, schema in tools.items()}
    spelled = {name: {k: _spelled(schema, k) for k in ("device", "area", "kind")} for name, schema in tools.items()}
    oks = refusals = 0
    for _ in range(1000):
        request = _random_request(rng, home, tools)
        before, seq_before = home.query(), home.store.last_seq(home.id)
        r = home.apply(request, source="test")
        after = home.query()
        assert r.seq > seq_before and home.store.last_seq(home.id) == r.seq  # audited exactly once
        if request["action"] in tools and request["action"] != "get_state":
            args = {"target": request["target"], "params": request["params"]}
            # What the schema refuses, the home refuses — for names as the schema spells them (the
            # home also takes "거실에어컨을", "tv": spacing, particles, case).
            if not validators[request["action"]].is_valid(args) and \
                    all(v in spelled[request["action"]][k] for k, v in request["target"].items()):
                assert not r.ok, request
        if not r.ok:
            refusals += 1
            assert r.error and after == before, request
            continue
        oks += 1
        expected = {i: dict(s) for i, s in before.items()}
        for x in r.results:
            expected[x["device"]].update(x["changed"])
        assert after == expected, request
        assert home.store.load_states(home.id) == after  # what is in memory is what is stored
    assert oks > 100 and refusals > 100
    print(f"1000 requests: {oks} applied, {refusals} refused")
    rows = home.store.audit(home.id, limit=2000)
    assert len(rows) == 1000 and all(json.dumps(row.results, ensure_ascii=False) for row in rows)
    home.close()


def test_bad_commands_give_reasons(home):
    for command, word in (([], "no actions"), ({"action": "turn_on"}, "target"),
                          ({"action": "turn_on", "target": {"device": "화성 에어컨"}}, "화성"),
                          ({"action": "fly", "target": {"device": "거실 조명"}}, "does not support"),
                          ({"action": "turn_on", "target": {"device": "거실 조명"}, "extra": 1}, "extra")):
        r = home.apply(command)
        assert not r.ok and word in r.error, (command, r.error)


def test_store_url_errors_are_clear():
    from ondol.home.errors import HomeError

    with pytest.raises(HomeError):
        Store.open("mongodb://nowhere")


def test_non_finite_numbers_are_refused_and_audited(home):
    """1e400 in JSON reads as infinity: refused like any bad command, with its audit row (the
    number written as text, since JSON cannot hold it), and nothing changes."""
    before = home.state("ac.living")
    for value in (json.loads("1e400"), float("-inf"), float("nan")):
        seq = home.store.last_seq(home.id)
        r = home.apply({"action": "set_temperature", "target": {"device": "거실 에어컨"},
                        "params": {"temperature": value}}, utterance="거실 에어컨 무한대로")
        assert not r.ok and "params.temperature" in r.error and "not a finite number" in r.error
        row = home.store.audit(home.id, limit=1)[0]
        assert row.seq == r.seq == seq + 1 and row.utterance == "거실 에어컨 무한대로"
        assert row.actions[0]["params"]["temperature"] == str(value) and not row.results[0]["ok"]
    assert home.state("ac.living") == before


def test_resolved_actions_are_the_one_shape_the_assistant_prints_and_apply_takes(home):
    """{"action", "device": id, "params"}: taken by id, never re-resolved by names; the target form
    still works at the edge; the two cannot be mixed in one action."""
    r = home.apply([{"action": "set_temperature", "device": "ac.living", "params": {"temperature": 23}}])
    assert r.ok and home.state("ac.living")["target_temperature"] == 23
    assert home.store.audit(home.id, limit=1)[0].actions == [
        {"action": "set_temperature", "device": "ac.living", "params": {"temperature": 23}}]
    for bad, problem in [({"action": "turn_on", "device": "거실 에어컨"}, "No device has the id"),
                         ({"action": "turn_on", "device": "ac.living", "target": {"device": "ac.living"}}, "not both"),
                         ({"action": "turn_on", "device": ["ac.living"]}, "is a device id")]:
        r = home.apply([bad])
        assert not r.ok and problem in r.error, r.error
    assert home.apply([{"action": "turn_off", "target": {"device": "거실 에어컨"}}]).ok
