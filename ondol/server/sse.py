"""Server-sent events that end cleanly: shared by the generation streams and the home's events."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.responses import StreamingResponse


class EventStream(StreamingResponse):
    """Server-sent events whose generator is closed as soon as the response ends for any reason,
    client disconnect included (Starlette would otherwise leave that to the garbage collector)."""

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()  # synchronous: runs even in a cancelled scope
            with contextlib.suppress(BaseException):
                await self.body_iterator.aclose()
