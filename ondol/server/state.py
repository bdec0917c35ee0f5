"""The server's lifecycle: loading the model in the background, readiness, draining on shutdown, and running under uvicorn."""


from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from ondol.engine.async_engine import AsyncEngine
from ondol.llm import LLM
from ondol.server import protocol as P
from ondol.server.errors import APIError
from ondol.server.metrics import Metrics
from ondol.server.shell import BackgroundLoad, Runner

log = logging.getLogger("ondol.server")

ModelSource = str | Path | LLM | Callable[[], LLM]


# --- state: loading, readiness, shutdown --------------------------------------------------------

class ServerState:
    """What the routes share: the model once loaded, the engine, the metrics, and the phase."""

    def __init__(self, source: ModelSource, served_model_name: str | None, max_waiting: int,
                 llm_options: dict[str, Any], grace_seconds: float) -> None:
        self.source = source
        if served_model_name is None:
            if isinstance(source, LLM):
                served_model_name = str(source.checkpoint.path)
            elif isinstance(source, str | Path):
                served_model_name = str(source)
            else:
                served_model_name = "ondol"
        self.model_name = served_model_name
        self.max_waiting = max_waiting
        self.llm_options = llm_options
        self.grace_seconds = grace_seconds
        self.phase = "loading"  # loading -> ready -> draining -> stopped; or failed
        self.error: str | None = None
        self.llm: LLM | None = None
        self.engine: AsyncEngine | None = None
        self.formatter: P.LogprobFormatter | None = None
        self.defaults = None
        self.max_model_len = 0
        self.loaded_at = int(time.time())
        self.on_ready: list[Callable[[], None]] = []
        self.on_failed: list[Callable[[str], None]] = []
        self.metrics = Metrics(self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.loader: BackgroundLoad | None = None
        self._shutdown: asyncio.Task | None = None

    # loading

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if isinstance(self.source, LLM):
            await self._loaded(self.source)
        else:
            self.loader = BackgroundLoad(self._build, "ondol-load", self._built, self._build_failed)
            self.loader.start()

    def _build(self) -> LLM:
        return LLM(self.source, **self.llm_options) if isinstance(self.source, str | Path) else self.source()

    def _built(self, llm: LLM) -> None:  # in the loader thread
        with contextlib.suppress(RuntimeError):  # the server stopped meanwhile: its loop is closed
            asyncio.run_coroutine_threadsafe(self._loaded(llm), self._loop)

    def _build_failed(self, message: str) -> None:  # in the loader thread
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._failed, message)

    async def _loaded(self, llm: LLM) -> None:
        if self.phase != "loading":
            return  # shut down while loading
        try:
            engine = AsyncEngine(llm.engine, max_waiting=self.max_waiting)
            await engine.start()
        except Exception as e:
            log.exception("Starting the engine failed")
            self._failed(f"{type(e).__name__}: {e}")
            return
        self.llm, self.engine = llm, engine
        self.formatter = P.LogprobFormatter(llm.tokenizer)
        self.defaults = llm.default_sampling_params()
        self.max_model_len = engine.engine.max_model_len
        self.phase = "ready"
        log.info("Model %s is ready", self.model_name)
        for cb in self.on_ready:
            cb()

    def _failed(self, message: str) -> None:
        if self.phase != "loading":
            return
        self.phase, self.error = "failed", message
        log.error("The model failed to load: %s", message)
        for cb in self.on_failed:
            cb(message)

    # serving

    def require_ready(self) -> AsyncEngine:
        if self.phase == "ready":
            return self.engine
        if self.phase == "loading":
            raise APIError(503, "The model is still loading; retry shortly.", "service_unavailable",
                           code="model_loading", headers={"Retry-After": "1"})
        if self.phase == "failed":
            raise APIError(503, f"The model failed to load: {self.error}", "service_unavailable", code="model_failed")
        raise APIError(503, "The server is shutting down.", "service_unavailable", code="shutting_down")

    def check_model(self, name: str) -> None:
        if name != self.model_name:
            raise APIError(404, f"The model `{name}` does not exist; this server serves `{self.model_name}`.",
                           param="model", code="model_not_found")

    # shutdown

    async def shutdown(self, grace_seconds: float | None = None) -> None:
        """Stop admitting, let requests in flight finish within the grace period, abort the rest.
        Idempotent: a second call waits for the first."""
        if self._shutdown is None:
            self._shutdown = asyncio.ensure_future(self._do_shutdown(
                self.grace_seconds if grace_seconds is None else grace_seconds))
        await asyncio.shield(self._shutdown)

    async def _do_shutdown(self, grace: float) -> None:
        self.phase = "draining" if self.phase in ("ready", "loading") else self.phase
        if self.engine is not None:
            log.info("Shutting down: waiting up to %.0f s for requests in flight", grace)
            await self.engine.shutdown(grace)
        self.phase = "stopped"



# --- running it -----------------------------------------------------------------------------------

def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info",
          on_ready: Callable[[str], None] | None = None,
          on_started: Callable[[str], None] | None = None) -> int:
    """Run ``app`` in the server shell's Runner until SIGTERM or Ctrl-C; returns the exit status (0,
    or 1 when the model failed to load or the port is taken). The first signal drains (new requests
    get 503, requests in flight the grace period), a second one exits at once. ``on_started(url)``
    once the port is open, ``on_ready(url)`` once the model is also loaded."""
    state: ServerState = app.state.ondol
    runner = Runner(app, host, port, log_level=log_level, drain=state.shutdown, grace_seconds=state.grace_seconds,
                    busy=lambda: state.loader is not None and state.loader.alive)

    def announce() -> None:
        if runner.started and state.phase == "ready" and on_ready is not None:
            on_ready(runner.url)

    def started() -> None:
        if on_started is not None:
            on_started(runner.url)
        announce()

    runner.on_started.append(started)
    state.on_ready.append(announce)
    state.on_failed.append(lambda message: runner.stop(1))
    status = runner.run()
    runner.exit_if_busy()
    return status
