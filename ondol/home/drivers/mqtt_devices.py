"""Simulated devices on an MQTT broker, for tests and demos of the MQTT driver.

Each device of a home file listens on ``ondol/<home>/<device>/set`` and answers as
``ondol.home.drivers.mqtt`` describes: it merges the command's ``changes`` into its state and
validates the result with its device type's schema (``DeviceType.complete_state``, the schema the
home itself uses), then either publishes the new full state, retained, with ``"ack"``, or refuses
with ``{"ack": id, "error": ...}`` (not retained, so the retained state stays the old one, which the
device keeps). Devices in ``silent`` never answer: the driver reports them unreachable.

    with MqttDeviceSimulator("mqtt://127.0.0.1:1883", load_home_file("home.yaml"), silent={"lock.front"}) as sim:
        ...
        sim.state("ac.living")            # what the device now holds
        sim.set_state("ac.living", {...})  # a change made by hand (on the device's own buttons)

All commands are handled in paho's network thread, one at a time, as a real device would.
"""

from __future__ import annotations

import copy
import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import paho.mqtt.client as mqtt

from ondol.home.devices import DeviceType, device_type
from ondol.home.drivers.mqtt import TOPIC_ROOT, check_topic_part, connect, decode, encode, parse_url, set_topic, state_topic
from ondol.home.errors import HomeError
from ondol.home.homefile import HomeSpec

log = logging.getLogger(__name__)


class MqttDeviceSimulator:
    """The devices of ``spec`` on the broker at ``url``. ``states`` (device id -> attributes) gives
    initial states over the home file's; ``silent`` devices receive commands but never answer (it is
    a plain set: tests may change it while running). ``commands`` records every command received."""

    def __init__(self, url: str, spec: HomeSpec, *, silent: Iterable[str] = frozenset(),
                 states: Mapping[str, Mapping[str, Any]] | None = None, timeout: float = 5.0) -> None:
        self.address = parse_url(url)
        self.home = check_topic_part(spec.home, "home")
        self.timeout = timeout
        self._types: dict[str, DeviceType] = {d.id: device_type(d.type, d.device_class) for d in spec.devices}
        unknown = (set(silent) | set(states or {})) - set(self._types)
        if unknown:
            raise HomeError(f"The home {self.home!r} has no device {', '.join(sorted(unknown))}.")
        self.silent = set(silent)
        self._states = {}
        for d in spec.devices:
            check_topic_part(d.id, "device")
            self._states[d.id] = self._types[d.id].complete_state({**d.state, **(states or {}).get(d.id, {})})
        self._lock = threading.Lock()  # the states: changed by the network thread, read by tests
        self.commands: list[tuple[str, dict[str, Any]]] = []  # (device, payload) as received
        self._subscribed = threading.Event()
        self._client: mqtt.Client | None = None

    # --- lifecycle ---

    def start(self) -> MqttDeviceSimulator:
        """Connect, publish every device's state (retained, without ``ack``) and listen for commands.
        Returns once the broker holds the states and the subscription is in place."""
        if self._client is not None:
            return self
        self._subscribed.clear()
        self._client = connect(self.address, timeout=self.timeout,
                               client_id=f"ondol-devices-{self.home}-{uuid.uuid4().hex[:8]}",
                               on_connected=self._on_connected, on_message=self._on_message,
                               on_subscribe=self._on_subscribe)
        with self._lock:
            initial = {device: copy.deepcopy(state) for device, state in self._states.items()}
        published = [self._client.publish(state_topic(self.home, device), encode({"state": state}), qos=1, retain=True)
                     for device, state in initial.items()]
        try:
            for info in published:
                info.wait_for_publish(self.timeout)  # PUBACK: the broker has the retained message
                if not info.is_published():  # (paho returns silently on timeout)
                    raise HomeError(f"no PUBACK in {self.timeout} s")
            if not self._subscribed.wait(self.timeout):
                raise HomeError(f"The MQTT broker at {self.address} did not confirm the subscription to "
                                f"{set_topic(self.home, '+')} in {self.timeout} s.")
        except (RuntimeError, ValueError, HomeError) as err:  # wait_for_publish raises when disconnected
            self.stop()
            raise HomeError(f"The simulated devices could not start on {self.address}: {err}") from None
        return self

    def stop(self) -> None:
        """Disconnect. The retained states stay on the broker, as a real device's do when it goes off."""
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def __enter__(self) -> MqttDeviceSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- inspection and changes by hand ---

    def state(self, device: str) -> dict[str, Any]:
        """A copy of the device's current state."""
        with self._lock:
            return copy.deepcopy(self._states[device])

    def states(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._states)

    def set_state(self, device: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change a device as a person would on the device itself: validated like a command, then
        published retained without ``ack`` (drivers report it to ``subscribe_states`` callbacks).
        Returns the new state; ``HomeError`` if the result is invalid (nothing changes then)."""
        if self._client is None:
            raise HomeError("The simulated devices are not started.")
        with self._lock:
            new = self._types[device].complete_state({**self._states[device], **changes})
            self._states[device] = new
            payload = encode({"state": new})
        self._client.publish(state_topic(self.home, device), payload, qos=1, retain=True).wait_for_publish(self.timeout)
        return copy.deepcopy(new)

    # --- the network thread ---

    def _on_connected(self, client: mqtt.Client) -> None:
        # Subscribed again on every reconnection (clean session); QoS 1 like the driver's commands.
        client.subscribe(set_topic(self.home, "+"), qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list, properties: Any) -> None:
        if any(code.is_failure for code in reason_codes):
            log.error("the MQTT broker refused the subscription to %s: %s", set_topic(self.home, "+"), reason_codes)
        else:
            self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        levels = message.topic.split("/")
        if len(levels) != 4 or levels[:2] != [TOPIC_ROOT, self.home] or levels[3] != "set":
            return
        device = levels[2]
        dtype = self._types.get(device)
        if dtype is None:  # no such device in this home: nobody answers, as on a real network
            return
        payload = decode(message.payload)
        self.commands.append((device, payload))
        if device in self.silent:
            return
        command_id = payload.get("id") if isinstance(payload, dict) else None
        if not isinstance(command_id, str) or not command_id:
            log.warning("%s: ignoring a command without an id: %r", device, payload)  # nothing to answer to
            return
        changes = payload.get("changes")
        with self._lock:
            if not isinstance(changes, dict):
                answer, retain = {"ack": command_id, "error": "changes must be an object of attribute: value"}, False
            else:
                try:
                    new = dtype.complete_state({**self._states[device], **changes})
                except HomeError as err:  # unknown attribute, value out of the schema: keep the old state
                    answer, retain = {"ack": command_id, "error": str(err)}, False
                else:
                    self._states[device] = new
                    answer, retain = {"ack": command_id, "state": copy.deepcopy(new)}, True
        # Published from the network thread: paho queues it and writes it on this same loop.
        client.publish(state_topic(self.home, device), encode(answer), qos=1, retain=retain)


__all__ = ["MqttDeviceSimulator"]
