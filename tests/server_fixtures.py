"""A real ondol server for tests: uvicorn on 127.0.0.1 and a free port, in a thread of the test
process (so tests can look at the engine behind it), stopped the way uvicorn stops."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import uvicorn

# Small KV caches: a test app needs a few MiB, not the default 1 GiB each.
TEST_KV_BYTES = 16 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    def __init__(self, app, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on", timeout_graceful_shutdown=5))
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    @property
    def state(self):
        return self.app.state.ondol

    def start(self, wait_ready: bool = True, timeout: float = 60) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        if wait_ready:
            self.wait_ready(deadline - time.monotonic())
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while httpx.get(f"{self.url}/health").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server's model did not become ready")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def wait_idle(engine, timeout: float = 10.0):
    """Wait until the engine has nothing running or waiting and no KV block in use; the stats."""
    deadline = time.monotonic() + timeout
    while True:
        s = engine.stats
        if s.num_running == 0 and s.num_waiting == 0 and s.num_kv_blocks_used == 0:
            return s
        if time.monotonic() > deadline:
            return s
        time.sleep(0.02)
