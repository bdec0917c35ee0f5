"""kill -9 a process in the middle of multi-device commits: nothing acknowledged is lost, nothing half-applied.

A child commits counter n to N devices (one transaction with its audit row) in a loop and records each
commit after it returns. The test kills it at random moments, several times, then checks the store.
SQLite (WAL file) and the real PostgreSQL from tests/services.py.

Children are forked from a forkserver that preloaded the store: importing ``ondol`` loads torch
(~1.5 s), which per kill would blow the time budget; a fork of a preloaded process starts in ms.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest

from ondol.home.store import Store
from tests.e2e.home_crash_child import HOME, device_ids

DEVICES = 20
KILLS = 6

_ctx = multiprocessing.get_context("forkserver")
_ctx.set_forkserver_preload(["tests.e2e.home_crash_child", "psycopg"])


def _read_acks(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "an ack line was torn"
    return [(int(c), int(s)) for c, s in (line.split() for line in text.splitlines())]


def _run_and_kill(url: str, ack_path: Path, rng: random.Random) -> None:
    from tests.e2e import home_crash_child

    before = len(_read_acks(ack_path))
    p = _ctx.Process(target=home_crash_child.run, args=(url, DEVICES, str(ack_path)), daemon=True)
    p.start()
    deadline = time.monotonic() + 20
    while len(_read_acks(ack_path)) == before:  # wait until it is in its loop
        assert p.is_alive(), f"the child died on its own (exit code {p.exitcode})"
        assert time.monotonic() < deadline, "the child acknowledged nothing in 20 s"
        time.sleep(0.002)
    time.sleep(rng.uniform(0, 0.04))
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    assert p.exitcode == -signal.SIGKILL


@pytest.fixture(params=["sqlite", "postgresql"])
def crash_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'home.db'}"
    import psycopg

    server = request.getfixturevalue("postgres_url")
    with psycopg.connect(server, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS crash_test")
        c.execute("CREATE DATABASE crash_test")
    return server.rsplit("/", 1)[0] + "/crash_test"


def test_kill_9_loses_nothing_acknowledged_and_half_applies_nothing(crash_url, tmp_path):
    rng = random.Random(5)
    ack_path = tmp_path / "acks.txt"
    for _ in range(KILLS):
        _run_and_kill(crash_url, ack_path, rng)
    acks = _read_acks(ack_path)

    with Store.open(crash_url) as store:
        states = store.load_states(HOME)
        audit = store.audit(HOME, limit=10_000)
        last_seq = store.last_seq(HOME)

    # No half-applied command: every device holds the same counter.
    assert set(states) == set(device_ids(DEVICES))
    counters = {s["counter"] for s in states.values()}
    assert len(counters) == 1, f"devices disagree: {sorted(counters)}"
    (final,) = counters
    # State and audit agree: commits 1..final each left exactly one row, in order, the last one
    # matching the state (each child resumed from the persisted counter, so a lost or duplicated
    # commit would show up as a gap or a repeat).
    assert [r.actions for r in audit] == [[{"set": n}] for n in range(1, final + 1)]
    assert audit[-1].seq == last_seq and audit[-1].utterance == f"{final}번"
    # Every acknowledged commit is there, under the seq the child was given.
    by_seq = {r.seq: r.actions[0]["set"] for r in audit}
    missing = [(c, s) for c, s in acks if by_seq.get(s) != c]
    assert not missing, f"acknowledged commits lost: {missing[:5]}"
    # At most the one commit in flight at each kill may be durable without its acknowledgement.
    assert len(acks) <= final <= len(acks) + KILLS
