"""ondol's OpenAI-compatible HTTP server: ``ondol serve MODEL`` or ``create_app(...)``.

The names are imported on first use, so the command line can read ``ondol.server.keys`` (flags and
API keys) without loading FastAPI and torch."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from ondol.server.app import create_app

        return create_app
    if name == "serve":
        from ondol.server.state import serve

        return serve
    raise AttributeError(f"module 'ondol.server' has no attribute {name!r}")
