"""The MQTT driver: commands to devices through a broker (Mosquitto), acknowledged by their state.

Topics and payloads (UTF-8 JSON; Korean is sent as is, never as \\uXXXX escapes):

* command, QoS 1, not retained, on ``ondol/<home>/<device>/set``::

      {"id": "<command id>", "changes": {"target_temperature": 22}}

* answer, on ``ondol/<home>/<device>/state``:

      {"ack": "<command id>", "state": {...the full state...}}   done (published retained)
      {"ack": "<command id>", "error": "..."}                     refused (not retained)
      {"state": {...}}                                            the device changed otherwise

A device's retained state message is its last known state, so a new subscriber (another hub, a
dashboard) sees every device at once. An answer counts as an acknowledgement only if it names the
command's id: the retained state from an earlier command, replayed when we subscribe, must not be
taken for the answer to a new one. No answer by the deadline means the device is unreachable, and
the Home then changes nothing (see ``ondol.home.drivers.Ack``).

Threads: paho's network thread (``loop_start``) runs every callback; ``send`` is called from the
Home's worker thread (or several), and waits on ``threading.Event``s the network thread sets.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from ondol.home.drivers import Ack
from ondol.home.errors import HomeError

log = logging.getLogger(__name__)

TOPIC_ROOT = "ondol"
KEEPALIVE_S = 30
StateCallback = Callable[[str, dict[str, Any]], None]


def set_topic(home: str, device: str) -> str:
    return f"{TOPIC_ROOT}/{home}/{device}/set"


def state_topic(home: str, device: str) -> str:
    return f"{TOPIC_ROOT}/{home}/{device}/state"


def check_topic_part(value: str, what: str) -> str:
    """A home or device id as one topic level. Home files only allow [a-z0-9_.-] ids; this guards the
    driver's own API, because '+', '#' or '/' in an id would publish to or listen on other topics."""
    if not isinstance(value, str) or not value or any(c in value for c in "/+#\0"):
        raise HomeError(f"{what} {value!r} cannot be an MQTT topic level (empty, or contains '/', '+' or '#').")
    return value


def encode(payload: dict[str, Any]) -> bytes:
    # ensure_ascii=False: Korean travels as UTF-8, readable with mosquitto_sub; allow_nan=False: a
    # NaN is not JSON, and a device parsing strictly would drop the whole message.
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def decode(payload: bytes) -> Any:
    """The JSON in a message, or None when it is not UTF-8 JSON (logged: a device misbehaving)."""
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        log.warning("ignoring a message that is not UTF-8 JSON: %s", err)
        return None


# --- the broker's address and the connection ----------------------------------------------------------


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:  # for messages: never the password
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


def parse_url(url: str) -> BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]`` (port 1883), or ``mqtts://`` for TLS (port 8883,
    verified against the system's CA certificates). ``HomeError`` says what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise HomeError("The MQTT broker URL is empty; write it as mqtt://host:1883.")
    try:
        parts = urlsplit(url.strip())
    except ValueError as err:  # e.g. an unclosed IPv6 bracket
        raise HomeError(f"Invalid MQTT broker URL {_redact(url)!r}: {err}.") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise HomeError(f"Invalid MQTT broker URL {_redact(url)!r}: the scheme must be mqtt:// or mqtts:// "
                        f"(TLS), not {parts.scheme + '://' if parts.scheme else 'missing'}.")
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = 0
    if port == 0:
        raise HomeError(f"Invalid MQTT broker URL {_redact(url)!r}: the port must be a number from 1 to 65535.")
    if not parts.hostname:
        raise HomeError(f"Invalid MQTT broker URL {_redact(url)!r}: it names no host; write it as mqtt://host:1883.")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise HomeError(f"Invalid MQTT broker URL {_redact(url)!r}: only mqtt://[user:password@]host[:port] "
                        "is understood (no path or query).")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(parts.hostname, port or (8883 if tls else 1883), tls,
                         unquote(parts.username) if parts.username else None,
                         unquote(parts.password) if parts.password is not None else None)


def _redact(url: str) -> str:
    """``url`` with any password replaced, for error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    userinfo, _, host = rest.partition("@")
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}" if ":" in userinfo else url


def connect(address: BrokerAddress, *, timeout: float, client_id: str,
            on_connected: Callable[[mqtt.Client], None],
            on_message: Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None],
            on_subscribe: Callable[..., None] | None = None,
            on_disconnected: Callable[[], None] | None = None) -> mqtt.Client:
    """A connected client with its network thread running, or ``HomeError`` naming the address.

    ``on_connected`` runs on every (re)connection, in the network thread: the session is clean, so
    that is where subscriptions are (re)made. paho reconnects by itself after a lost connection."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
    client.connect_timeout = timeout
    client.reconnect_delay_set(min_delay=1, max_delay=10)  # a home hub wants its devices back soon
    first = threading.Event()
    refusal: list[str] = []

    def _on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        _no_delay(client)  # each connection has a new socket
        if reason_code.is_failure:
            refusal.append(str(reason_code))
        else:
            refusal.clear()
            _guard(on_connected, client)
        first.set()

    def _on_disconnect(client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if on_disconnected is not None:
            _guard(on_disconnected)

    client.on_connect = _on_connect
    client.on_disconnect = _on_disconnect
    # paho 2 lets an exception in a callback end the network thread (suppress_exceptions is False),
    # which would silently stop all acknowledgements: every callback goes through _guard.
    client.on_message = lambda *args: _guard(on_message, *args)
    if on_subscribe is not None:
        client.on_subscribe = lambda *args: _guard(on_subscribe, *args)
    try:
        # Blocking: the TCP (and TLS) handshake; the CONNACK is read by the network thread.
        client.connect(address.host, address.port, keepalive=KEEPALIVE_S)
    except (OSError, ValueError) as err:  # refused, unknown host, timeout, TLS (ssl.SSLError is an OSError)
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        raise HomeError(f"Cannot connect to the MQTT broker at {address}: {reason}.") from None
    client.loop_start()
    if not first.wait(timeout) or refusal:
        client.disconnect()
        client.loop_stop()
        why = f"it refused the connection ({refusal[0]})" if refusal else f"no answer to CONNECT in {float(timeout)} s"
        raise HomeError(f"Cannot connect to the MQTT broker at {address}: {why}.")
    return client


def _no_delay(client: mqtt.Client) -> None:
    """Turn Nagle's algorithm off. paho does not, and writes each MQTT packet with its own send():
    a PUBLISH then waits for the ACK of the previous small packet, which the peer's kernel delays
    by ~40 ms. Measured on localhost: a command's round trip 88 ms, 44 ms with this, under 1 ms
    when the broker does the same (Mosquitto's ``set_tcp_nodelay true``; its default is false)."""
    sock = client.socket()
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):  # not TCP (a unix socket), or already closed
            pass


def _guard(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("error in an MQTT callback (ignored, so the network thread keeps running)")


# --- the driver ----------------------------------------------------------------------------------------


@dataclass
class _Pending:
    """A command waiting for its device's answer; the network thread fills ``answer``."""

    home: str
    device: str
    done: threading.Event = field(default_factory=threading.Event)
    answer: dict[str, Any] | None = None


@dataclass
class _HomeSubscription:
    ready: threading.Event = field(default_factory=threading.Event)  # the broker confirmed (SUBACK)
    callbacks: list[StateCallback] = field(default_factory=list)


class MqttDriver:
    """The Driver protocol over MQTT. ``timeout`` is the time a whole ``send`` may take: every device
    is commanded at once, and whichever has not answered by then is unreachable."""

    def __init__(self, url: str, *, timeout: float = 2.0, client_id: str | None = None) -> None:
        if not timeout > 0:
            raise HomeError(f"The MQTT timeout must be positive, not {timeout!r}.")
        self.timeout = float(timeout)
        self.address = parse_url(url)
        self._lock = threading.Lock()  # guards the three dicts below; callbacks take it briefly
        self._pending: dict[str, _Pending] = {}  # command id -> its waiter
        self._homes: dict[str, _HomeSubscription] = {}  # homes whose state topics we listen to
        self._subscribing: dict[int, str] = {}  # SUBSCRIBE message id -> home, until its SUBACK
        self._closed = False
        self._client = connect(self.address, timeout=self.timeout,
                               client_id=client_id or f"ondol-home-{uuid.uuid4().hex[:12]}",
                               on_connected=self._on_connected, on_message=self._on_message,
                               on_subscribe=self._on_subscribe, on_disconnected=self._on_disconnected)

    # --- the Driver protocol ---

    def send(self, home: str, changes: dict[str, dict[str, Any]]) -> dict[str, Ack]:
        """Command every device at once; an Ack per device by ``timeout`` after the call."""
        if not changes:
            return {}
        deadline = time.monotonic() + self.timeout
        check_topic_part(home, "home")
        for device in changes:
            check_topic_part(device, "device")
        if self._closed:
            raise HomeError("The MQTT driver is closed.")
        # Listen before speaking: an answer that arrives before the SUBACK would be lost.
        if not self._listen(home).ready.wait(max(0.0, deadline - time.monotonic())):
            why = f"unreachable: not connected to the MQTT broker at {self.address}"
            return {device: Ack(False, error=why) for device in changes}
        acks: dict[str, Ack] = {}
        waiting: dict[str, tuple[str, _Pending]] = {}
        try:
            for device, attributes in changes.items():
                command_id = uuid.uuid4().hex
                try:
                    payload = encode({"id": command_id, "changes": attributes})
                except (TypeError, ValueError) as err:
                    acks[device] = Ack(False, error=f"the changes for {device} are not JSON: {err}")
                    continue
                pending = _Pending(home, device)
                with self._lock:
                    self._pending[command_id] = pending
                waiting[device] = (command_id, pending)
                # While disconnected paho would queue the command and deliver it on reconnection,
                # long after we reported the device unreachable: do not publish then. (A connection
                # lost in the instant between this check and the write still queues it: QoS 1 is
                # "at least once", and such a command may reach the device late; its answer then
                # goes to subscribe_states callbacks.)
                if not self._client.is_connected():
                    acks[device] = Ack(False, error=f"unreachable: not connected to the MQTT broker at {self.address}")
                    continue
                info = self._client.publish(set_topic(home, device), payload, qos=1)
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    acks[device] = Ack(False, error=f"unreachable: cannot publish to {self.address} "
                                                    f"({mqtt.error_string(info.rc)})")
            for device, (_, pending) in waiting.items():
                if device not in acks:
                    pending.done.wait(max(0.0, deadline - time.monotonic()))
        finally:
            with self._lock:
                for command_id, _ in waiting.values():
                    self._pending.pop(command_id, None)
        for device, (_, pending) in waiting.items():
            if device not in acks:
                acks[device] = self._ack(device, pending.answer)
        return {device: acks[device] for device in changes}

    def _ack(self, device: str, answer: dict[str, Any] | None) -> Ack:
        if answer is None:
            return Ack(False, error=f"unreachable: no answer from {device} in {self.timeout} s")
        if "error" in answer:
            error = answer["error"]
            return Ack(False, error=error if isinstance(error, str) and error else f"{device} refused the change")
        state = answer.get("state")
        if state is not None and not isinstance(state, dict):
            return Ack(False, error=f"{device} answered with a state that is not an object: {state!r}")
        return Ack(True, state=state)  # an answer without a state is allowed: the Ack says "if reported"

    def subscribe_states(self, home: str, callback: StateCallback) -> Callable[[], None]:
        """Call ``callback(device, state)`` for each state a device of ``home`` reports other than
        as the answer to a command of this driver still being waited for: a device changed by hand
        or by another controller, a late answer (after ``send`` reported the device unreachable:
        the device did change), and, right away, every device's retained state (the broker replays
        them on each SUBSCRIBE). The Home can record these. Returns a function that unsubscribes.

        The callback runs in paho's network thread: it must return quickly and must not call
        ``send`` (whose answers that same thread delivers); hand work to another thread instead.
        States are reported as the devices send them, not validated: the Home checks them."""
        check_topic_part(home, "home")
        with self._lock:
            subscription = self._homes.get(home)
            if subscription is not None:
                subscription.callbacks.append(callback)
                # Subscribe again, so that the broker replays the retained states to this callback.
                self._subscribe(home)
        if subscription is None:
            subscription = self._listen(home, callback)
        subscription.ready.wait(self.timeout)

        def unsubscribe() -> None:
            with self._lock:
                if callback in subscription.callbacks:
                    subscription.callbacks.remove(callback)

        return unsubscribe

    def close(self) -> None:
        """Disconnect; a ``send`` still waiting returns at once, its devices unreachable."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for pending in self._pending.values():
                pending.done.set()
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- subscriptions ---

    def _listen(self, home: str, callback: StateCallback | None = None) -> _HomeSubscription:
        """The subscription to ``ondol/<home>/+/state``, made on first use (one wildcard per home:
        one SUBACK to wait for however many devices a command reaches)."""
        with self._lock:
            subscription = self._homes.get(home)
            if subscription is None:
                subscription = self._homes[home] = _HomeSubscription()
                if callback is not None:
                    subscription.callbacks.append(callback)
                self._subscribe(home)
            return subscription

    def _subscribe(self, home: str) -> None:
        # Called with self._lock held, so that _on_subscribe (which takes it) cannot see the SUBACK
        # before the message id is recorded: paho may deliver it before subscribe() returns.
        result, mid = self._client.subscribe(state_topic(home, "+"), qos=1)
        if result == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
            self._subscribing[mid] = home
        # Otherwise we are disconnected: _on_connected subscribes again once paho has reconnected.

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list, properties: Any) -> None:
        with self._lock:
            home = self._subscribing.pop(mid, None)
            subscription = self._homes.get(home) if home is not None else None
        if subscription is None:
            return
        if any(code.is_failure for code in reason_codes):
            log.error("the MQTT broker %s refused the subscription to %s: %s",
                      self.address, state_topic(home, "+"), reason_codes)
        else:
            subscription.ready.set()

    def _on_connected(self, client: mqtt.Client) -> None:
        # A clean session forgets subscriptions: make them again after a reconnection.
        with self._lock:
            self._subscribing.clear()
            for home in self._homes:
                self._subscribe(home)

    def _on_disconnected(self) -> None:
        # Until the SUBACKs after reconnecting, a send must wait rather than command into the void.
        with self._lock:
            for subscription in self._homes.values():
                subscription.ready.clear()

    # --- answers ---

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        levels = message.topic.split("/")
        if len(levels) != 4 or levels[0] != TOPIC_ROOT or levels[3] != "state":
            return
        home, device = levels[1], levels[2]
        payload = decode(message.payload)
        if not isinstance(payload, dict):
            return
        ack = payload.get("ack")
        with self._lock:
            pending = self._pending.get(ack) if isinstance(ack, str) else None
            # The id is a random UUID, so matching it is enough; checking home and device too makes
            # a device answering for another (a misconfigured bridge) fail loudly as unreachable.
            if pending is not None and (pending.home, pending.device) == (home, device) and not pending.done.is_set():
                pending.answer = payload
                pending.done.set()
                return
            subscription = self._homes.get(home)
            callbacks = list(subscription.callbacks) if subscription is not None else []
        state = payload.get("state")
        if isinstance(state, dict):
            for callback in callbacks:
                _guard(callback, device, state)


__all__ = ["BrokerAddress", "MqttDriver", "connect", "parse_url", "set_topic", "state_topic"]
