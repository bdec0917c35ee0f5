"""The in-process simulator: every device answers at once, as a perfect device would.

``unreachable`` lists devices that do not answer (tests and demos of failure handling use it)."""

from __future__ import annotations

from typing import Any

from ondol.home.drivers import Ack


class SimulatorDriver:
    def __init__(self, unreachable: set[str] | None = None) -> None:
        self.unreachable = set(unreachable or ())
        self.sent: list[tuple[str, dict[str, dict[str, Any]]]] = []  # every command, for inspection

    def send(self, home: str, changes: dict[str, dict[str, Any]]) -> dict[str, Ack]:
        self.sent.append((home, changes))
        return {device: Ack(False, error="unreachable: the simulated device is switched off")
                if device in self.unreachable else Ack(True) for device in changes}

    def close(self) -> None:
        pass
