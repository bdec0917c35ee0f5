"""Which JSON Schema keywords ondol enforces, checked before a schema is compiled."""

from __future__ import annotations

from typing import Any


def check_schema(schema: dict[str, Any]) -> None:
    """Raise InvalidRequestError naming any keyword that would not be enforced."""
