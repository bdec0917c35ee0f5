"""The engine for an asyncio server: one background thread steps the engine; requests and aborts
reach it through a command queue, outputs come back to each request's asyncio.Queue.

Only the stepping thread touches the Engine (it is not thread-safe). A request whose consumer
stops listening (a client that disconnected) is aborted at once, freeing its blocks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from ondol.engine.engine import Engine
from ondol.engine.request import RequestOutput
from ondol.engine.sampler import SamplingParams
from ondol.errors import OndolError

log = logging.getLogger("ondol.engine")


class QueueFullError(OndolError):
    """Too many requests are waiting; the client should retry later (HTTP 429)."""


class EngineStoppedError(OndolError):
    """The engine is shutting down and admits nothing new (HTTP 503)."""


class GenerationError(RuntimeError):
    """One request met a bug while it was generated; it alone was finished (the others run on)."""


class AsyncEngine:
    def __init__(self, engine: Engine, max_waiting: int = 256) -> None:
        self.engine = engine
        self.max_waiting = max_waiting
        self._commands: deque[tuple[Any, ...]] = deque()  # appends/pops are atomic in CPython
        self._queues: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = False
        self._admitting = True
        self._pending_adds = 0
        self._lock = threading.Lock()  # guards _pending_adds, changed by both threads

    @property
    def num_waiting(self) -> int:
        return self.engine.scheduler.num_waiting + self._pending_adds

    async def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="ondol-engine", daemon=True)
        self._thread.start()

    async def shutdown(self, grace_seconds: float = 10.0) -> None:
        """Admit nothing new; let in-flight requests finish for up to grace_seconds, abort the rest."""
        self._admitting = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        while self._queues and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for request_id in list(self._queues):
            self._command("abort", request_id)
        while self._queues and loop.time() < deadline + 2:
            await asyncio.sleep(0.01)
        self._running = False
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    async def generate(self, request_id: str, prompt_ids: list[int],
                       params: SamplingParams) -> AsyncIterator[RequestOutput]:
        """Outputs of one request as they are produced; the last has ``finished`` set. Raises
        InvalidRequestError, QueueFullError or EngineStoppedError before yielding anything."""
        if not self._admitting or not self._running:
            raise EngineStoppedError("The server is shutting down.")
        self.engine.check_request(prompt_ids, params)  # reads only immutable config: safe from this thread
        if self.num_waiting >= self.max_waiting:
            raise QueueFullError(f"Too many requests are waiting ({self.max_waiting}); retry shortly.")
        queue: asyncio.Queue = asyncio.Queue()
        self._queues[request_id] = (asyncio.get_running_loop(), queue)
        with self._lock:
            self._pending_adds += 1
        self._command("add", request_id, prompt_ids, params)
        finished = False
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                finished = item.finished
                yield item
                if finished:
                    return
        finally:
            if not finished:
                self._command("abort", request_id)

    def _command(self, *cmd: Any) -> None:
        self._commands.append(cmd)
        self._wake.set()

    # --- the stepping thread -------------------------------------------------------------------

    def _loop(self) -> None:
        while self._running:
            self._apply_commands()
            if not self.engine.has_unfinished_requests():
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                outputs = self.engine.step()
            except Exception as e:  # a bug: fail the requests in flight, keep serving
                log.exception("engine step failed")
                for request_id in list(self.engine.requests):
                    self.engine.abort_request(request_id)
                    self._deliver(request_id, e, last=True)
                continue
            for out in outputs:
                item = GenerationError(f"generation failed: {out.error}") if out.error is not None else out
                self._deliver(out.request_id, item, last=out.finished)

    def _apply_commands(self) -> None:
        while self._commands:
            kind, request_id, *args = self._commands.popleft()
            if kind == "add":
                with self._lock:
                    self._pending_adds -= 1
                if request_id not in self._queues:
                    continue  # its consumer already left
                try:
                    self.engine.add_request(args[0], args[1], request_id)
                except Exception as e:
                    self._deliver(request_id, e, last=True)
            else:
                req = self.engine.requests.get(request_id)
                self.engine.abort_request(request_id)
                # A consumer still listening (a shutdown abort) gets a last output, not silence.
                prompt = len(req.prompt_ids) if req else 0
                done = len(req.output.token_ids) if req else 0
                self._deliver(request_id, RequestOutput(request_id, "", [], None, True, "abort", prompt, done), last=True)

    def _deliver(self, request_id: str, item: Any, last: bool) -> None:
        target = self._queues.pop(request_id, None) if last else self._queues.get(request_id)
        if target is not None:
            loop, queue = target
            loop.call_soon_threadsafe(queue.put_nowait, item)
