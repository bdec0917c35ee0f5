"""ondol's OpenAI-compatible HTTP server: ``ondol serve MODEL`` or ``create_app(...)``."""

from ondol.server.app import create_app
from ondol.server.state import serve

__all__ = ["create_app", "serve"]
