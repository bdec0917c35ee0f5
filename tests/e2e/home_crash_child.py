"""The process tests/e2e/test_home_crash.py kills: multi-device commits in a loop, each acknowledged.

Kept apart from the test module so the forkserver can preload it without pytest.
"""

from __future__ import annotations

import os

from ondol.home.store import AuditEntry, Store

HOME = "크래시 테스트"


def device_ids(n: int) -> list[str]:
    return [f"기기{i:02d}" for i in range(n)]


def run(url: str, devices: int, ack_path: str) -> None:
    """Commit counter 1, 2, 3, ... to every device; after each commit returns, append "counter seq"."""
    ids = device_ids(devices)
    store = Store.open(url)
    store.init_states(HOME, {d: {"counter": 0} for d in ids})
    counter = store.load_states(HOME)[ids[0]]["counter"]
    # O_APPEND + one small os.write per ack: once write() returns the line is in the kernel, so a
    # kill -9 right after cannot lose it (a buffered file object could).
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    while True:
        counter += 1
        # Padding makes each transaction do real work, so kills often land inside one.
        changes = {d: {"counter": counter, "note": "켜짐 " * 20} for d in ids}
        seq = store.commit(HOME, changes, AuditEntry("crash-test", [{"set": counter}], [{"ok": True}], f"{counter}번"))
        os.write(fd, f"{counter} {seq}\n".encode())
