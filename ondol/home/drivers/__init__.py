"""Device drivers: how a validated state change reaches a device and is acknowledged.

A driver gets, per device, the attributes to change, and answers per device whether the device
took them (``Ack``). The home commits state only for a command every device acknowledged; a device
that does not answer in time is unreachable and its state is not changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Ack:
    ok: bool
    state: dict[str, Any] | None = None  # the device's state after the change, when it reports one
    error: str | None = None  # why not: "unreachable: no answer in 2.0 s", the device's own refusal


class Driver(Protocol):
    def send(self, home: str, changes: dict[str, dict[str, Any]]) -> dict[str, Ack]:
        """Send each device its changes (device id -> changed attributes); an Ack per device."""
        ...

    def close(self) -> None: ...
