"""The MQTT driver against a real Mosquitto (tests/services.py) and simulated devices on it.

The broker is shared by the session and keeps retained messages, so every test uses its own home id.
"""

import json
import textwrap
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ondol.home.drivers import Ack
from ondol.home.drivers.mqtt import MqttDriver, parse_url
from ondol.home.drivers.mqtt_devices import MqttDeviceSimulator
from ondol.home.errors import HomeError
from ondol.home.homefile import parse_home
from tests.services import free_port

HOME = textwrap.dedent("""\
    home: {home}
    areas:
      - id: living_room
        names: [거실]
    devices:
      - id: ac.living
        type: air_conditioner
        names: [거실 에어컨]
        area: living_room
        state: {{power: off, target_temperature: 26, mode: cool}}
      - id: light.living
        type: light
        names: [거실 불]
        area: living_room
      - id: light.hall
        type: light
      - id: speaker.living
        type: speaker
        area: living_room
      - id: lock.front
        type: lock
    """)

SHORT = 0.5  # the timeout of the tests where a device stays silent
SLACK = 0.4  # how much longer than the timeout a send may take (2 CPUs shared with other tests)


@pytest.fixture
def home_spec():
    return parse_home(HOME.format(home=f"t-{uuid.uuid4().hex[:10]}"))


@pytest.fixture
def driver(mqtt_url):
    with MqttDriver(mqtt_url, timeout=2.0) as d:
        yield d


def retained(url: str, topic: str, timeout: float = 2.0) -> dict | None:
    """What a fresh subscriber gets on ``topic``: the retained message (decoded), or None."""
    address = parse_url(url)
    got: list[mqtt.MQTTMessage] = []
    arrived = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:8]}")

    def on_message(client, userdata, message):
        got.append(message)
        arrived.set()

    client.on_message = on_message
    client.on_connect = lambda client, *args: client.subscribe(topic, qos=1)
    client.connect(address.host, address.port)
    client.loop_start()
    try:
        if not arrived.wait(timeout):
            return None
        assert got[0].retain
        return json.loads(got[0].payload.decode("utf-8"))
    finally:
        client.disconnect()
        client.loop_stop()


def test_command_is_acknowledged_with_the_new_state_and_retained(mqtt_url, home_spec, driver):
    home = home_spec.home
    with MqttDeviceSimulator(mqtt_url, home_spec) as sim:
        # Before any command, the broker already holds every device's state, without an ack.
        assert retained(mqtt_url, f"ondol/{home}/ac.living/state") == {"state": sim.state("ac.living")}
        acks = driver.send(home, {"ac.living": {"power": "on", "target_temperature": 22}})
        ack = acks["ac.living"]
        assert ack.ok and ack.error is None
        assert ack.state == {**home_spec.device("ac.living").state, "power": "on", "target_temperature": 22}
        assert sim.state("ac.living") == ack.state
        message = retained(mqtt_url, f"ondol/{home}/ac.living/state")
        assert message["state"] == ack.state and isinstance(message["ack"], str)
        # The command went out as documented.
        device, command = sim.commands[-1]
        assert device == "ac.living" and command == {"id": message["ack"], "changes": {"power": "on", "target_temperature": 22}}


def test_a_silent_device_is_unreachable_in_the_timeout_and_unchanged(mqtt_url, home_spec):
    home = home_spec.home
    with MqttDriver(mqtt_url, timeout=SHORT) as driver, MqttDeviceSimulator(mqtt_url, home_spec, silent={"lock.front"}) as sim:
        before = sim.state("lock.front")
        started = time.monotonic()
        acks = driver.send(home, {"lock.front": {"lock_state": "unlocked"}})
        elapsed = time.monotonic() - started
        assert acks == {"lock.front": Ack(False, error=f"unreachable: no answer from lock.front in {SHORT} s")}
        assert SHORT <= elapsed < SHORT + SLACK, elapsed
        assert sim.commands and sim.commands[-1][0] == "lock.front"  # it was sent, and not answered
        assert sim.state("lock.front") == before
        assert retained(mqtt_url, f"ondol/{home}/lock.front/state") == {"state": before}


def test_a_device_nobody_simulates_is_unreachable(mqtt_url, home_spec):
    with MqttDriver(mqtt_url, timeout=SHORT) as driver:
        acks = driver.send(home_spec.home, {"light.hall": {"power": "on"}})
    assert not acks["light.hall"].ok and acks["light.hall"].error.startswith("unreachable: no answer from light.hall")


def test_a_change_out_of_the_schema_is_refused_and_the_state_kept(mqtt_url, home_spec, driver):
    home = home_spec.home
    with MqttDeviceSimulator(mqtt_url, home_spec) as sim:
        before = sim.state("ac.living")
        started = time.monotonic()
        acks = driver.send(home, {"ac.living": {"target_temperature": 99}})
        assert time.monotonic() - started < 1.0  # a refusal is an answer: no waiting for the timeout
        ack = acks["ac.living"]
        assert not ack.ok and ack.state is None
        assert "target_temperature" in ack.error and "99" in ack.error and "30" in ack.error, ack.error
        assert not ack.error.startswith("unreachable")
        # Unknown attributes are refused too, naming the attribute.
        unknown = driver.send(home, {"ac.living": {"volume": 3}})["ac.living"]
        assert not unknown.ok and "volume" in unknown.error
        assert sim.state("ac.living") == before
        assert retained(mqtt_url, f"ondol/{home}/ac.living/state") == {"state": before}


def test_several_devices_are_commanded_concurrently(mqtt_url, home_spec):
    home = home_spec.home
    changes = {"ac.living": {"power": "on"}, "light.living": {"power": "on", "brightness": 30},
               "light.hall": {"power": "on"}, "speaker.living": {"volume": 12}, "lock.front": {"lock_state": "unlocked"}}
    with MqttDriver(mqtt_url, timeout=2.0) as driver, MqttDeviceSimulator(mqtt_url, home_spec) as sim:
        started = time.monotonic()
        acks = driver.send(home, changes)
        elapsed = time.monotonic() - started
        assert list(acks) == list(changes)
        assert all(a.ok for a in acks.values()), acks
        for device, attributes in changes.items():
            assert acks[device].state == sim.state(device) and attributes.items() <= acks[device].state.items()
        assert elapsed < 1.0, elapsed  # << 5 devices x 2 s

    # Silent devices time out together: one deadline for the whole send, not one per device.
    sim = MqttDeviceSimulator(mqtt_url, home_spec, silent={"light.living", "light.hall", "lock.front"})
    with MqttDriver(mqtt_url, timeout=SHORT) as driver, sim:
        started = time.monotonic()
        acks = driver.send(home, changes)
        elapsed = time.monotonic() - started
        assert [d for d, a in acks.items() if a.ok] == ["ac.living", "speaker.living"]
        assert all(acks[d].error.startswith("unreachable") for d in sim.silent)
        assert SHORT <= elapsed < SHORT + SLACK, elapsed  # not 3 x SHORT


def test_sends_from_several_threads(mqtt_url, home_spec, driver):
    home = home_spec.home
    results: dict[str, Ack] = {}
    with MqttDeviceSimulator(mqtt_url, home_spec):
        def command(device: str, brightness: int) -> None:
            results.update(driver.send(home, {device: {"brightness": brightness}}))

        threads = [threading.Thread(target=command, args=args) for args in (("light.living", 10), ("light.hall", 11))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results["light.living"].ok and results["light.living"].state["brightness"] == 10
    assert results["light.hall"].ok and results["light.hall"].state["brightness"] == 11


def test_korean_round_trips(mqtt_url, home_spec, driver):
    home = home_spec.home
    # Through the simulator: a Korean value goes out in the command and comes back in the refusal.
    with MqttDeviceSimulator(mqtt_url, home_spec) as sim:
        ack = driver.send(home, {"ac.living": {"mode": "냉방"}})["ac.living"]
        assert not ack.ok and "냉방" in ack.error, ack.error
        assert sim.commands[-1][1]["changes"] == {"mode": "냉방"}

    # Through a hand-written device, on the wire: UTF-8 (not \\uXXXX escapes) both ways, and a Korean
    # state value and refusal reach the Ack intact. No schema has free text, so no simulator here.
    address = parse_url(mqtt_url)
    raw: list[bytes] = []
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"device-{uuid.uuid4().hex[:8]}")
    subscribed = threading.Event()

    def on_message(client, userdata, message):
        raw.append(message.payload)
        command = json.loads(message.payload.decode("utf-8"))
        if command["changes"].get("label") == "거실 조명":
            answer = {"ack": command["id"], "state": {"label": "거실 조명", "power": "on"}}
        else:
            answer = {"ack": command["id"], "error": "문이 열려 있어서 잠글 수 없어요"}
        client.publish(message.topic.replace("/set", "/state"),
                       json.dumps(answer, ensure_ascii=False).encode("utf-8"), qos=1)

    device.on_message = on_message
    device.on_connect = lambda client, *args: client.subscribe(f"ondol/{home}/+/set", qos=1)
    device.on_subscribe = lambda *args: subscribed.set()
    device.connect(address.host, address.port)
    device.loop_start()
    try:
        assert subscribed.wait(2)
        acks = driver.send(home, {"light.living": {"label": "거실 조명"}, "lock.front": {"lock_state": "locked"}})
    finally:
        device.disconnect()
        device.loop_stop()
    assert acks["light.living"] == Ack(True, state={"label": "거실 조명", "power": "on"})
    assert acks["lock.front"] == Ack(False, error="문이 열려 있어서 잠글 수 없어요")
    assert any("거실 조명".encode() in payload for payload in raw) and not any(b"\\u" in p for p in raw)


def test_subscribe_states_reports_changes_made_by_hand(mqtt_url, home_spec, driver):
    home = home_spec.home
    seen: list[tuple[str, dict]] = []
    arrived = threading.Condition()

    def record(device, state):
        with arrived:
            seen.append((device, state))
            arrived.notify_all()

    def wait_for(predicate) -> bool:
        with arrived:
            return arrived.wait_for(lambda: predicate(seen), timeout=2)

    with MqttDeviceSimulator(mqtt_url, home_spec) as sim:
        driver.send(home, {"light.hall": {"power": "on"}})  # the driver already listens to the home
        unsubscribe = driver.subscribe_states(home, record)
        # The retained states are replayed to the new callback, one per device.
        assert wait_for(lambda s: {d for d, _ in s} == set(sim.states()))
        assert dict(seen)["light.hall"]["power"] == "on"
        seen.clear()
        # A command of ours is answered to send(), not reported as a change...
        ack = driver.send(home, {"ac.living": {"power": "on"}})["ac.living"]
        assert ack.ok
        # ...a change by hand is.
        sim.set_state("light.living", {"power": "on", "brightness": 55})
        assert wait_for(lambda s: any(d == "light.living" for d, _ in s))
        assert seen == [("light.living", sim.state("light.living"))]
        unsubscribe()
        sim.set_state("light.living", {"brightness": 60})
        time.sleep(0.2)
        assert len(seen) == 1


def test_bad_urls(mqtt_url):
    for url, words in [("http://127.0.0.1:1883", "mqtt://"), ("mqtt://", "no host"), ("mqtt://host:99999", "port"),
                       ("mqtt://host:abc", "port"), ("", "empty"), ("mqtt://host/path", "no path"),
                       ("127.0.0.1:1883", "scheme")]:
        with pytest.raises(HomeError, match=words):
            MqttDriver(url)
    address = parse_url("mqtts://us%40er:s3cret@broker.local")
    assert (address.host, address.port, address.tls, address.username, address.password) == (
        "broker.local", 8883, True, "us@er", "s3cret")
    assert "s3cret" not in str(address) and "s3cret" not in repr(address)
    with pytest.raises(HomeError) as info:
        MqttDriver("ftp://user:s3cret@host")
    assert "s3cret" not in str(info.value)


def test_an_unreachable_broker(mqtt_url):
    port = free_port()
    started = time.monotonic()
    with pytest.raises(HomeError, match=f"127.0.0.1:{port}"):
        MqttDriver(f"mqtt://127.0.0.1:{port}", timeout=1.0)
    assert time.monotonic() - started < 2.0
    with pytest.raises(HomeError, match=f"127.0.0.1:{port}"):
        MqttDeviceSimulator(f"mqtt://127.0.0.1:{port}", parse_home(HOME.format(home="x"))).start()


def test_a_broker_that_goes_away(home_spec):
    # A broker of its own, to stop: the driver must answer "unreachable" in time, not hang or raise.
    from tests.services import mosquitto_server

    with mosquitto_server() as url:
        driver = MqttDriver(url, timeout=SHORT)
        with MqttDeviceSimulator(url, home_spec):
            assert driver.send(home_spec.home, {"light.hall": {"power": "on"}})["light.hall"].ok
    try:
        started = time.monotonic()
        ack = driver.send(home_spec.home, {"light.hall": {"power": "off"}})["light.hall"]
        assert not ack.ok and ack.error.startswith("unreachable"), ack
        assert time.monotonic() - started < SHORT + SLACK
    finally:
        driver.close()
    driver.close()  # twice is fine


def test_home_over_mqtt_is_all_or_nothing(mqtt_url, home_spec):
    # The whole path: Home -> MqttDriver -> broker -> simulated devices, and back.
    from ondol.home.home import Home

    with MqttDeviceSimulator(mqtt_url, home_spec) as devices, \
            Home(home_spec, store="sqlite:///:memory:", driver=MqttDriver(mqtt_url, timeout=SHORT)) as home:
        r = home.apply([{"action": "turn_on", "target": {"area": "거실", "kind": "불"}},
                        {"action": "set_temperature", "target": {"device": "거실 에어컨"}, "params": {"temperature": 22}}])
        assert r.ok and devices.state("light.living")["power"] == "on"
        assert devices.state("ac.living")["target_temperature"] == 22 == home.state("ac.living")["target_temperature"]
        assert retained(mqtt_url, f"ondol/{home.id}/ac.living/state")["state"]["target_temperature"] == 22

        devices.silent.add("light.hall")
        before = home.query()
        r = home.apply([{"action": "set_temperature", "target": {"device": "거실 에어컨"}, "params": {"temperature": 27}},
                        {"action": "turn_on", "target": {"device": "light.hall"}}])
        assert not r.ok and "light.hall" in r.error and "unreachable" in r.error
        assert home.query() == before  # nothing of the command happened...
        assert devices.state("ac.living")["target_temperature"] == 22  # ...on the devices either: undone
