"""ondol.home.store: the same suite against SQLite (a WAL file) and a real PostgreSQL (tests/services.py)."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest

from ondol.errors import OndolError
from ondol.home.errors import HomeError
from ondol.home.store import AuditEntry, SQLiteStore, Store, StoreError

@pytest.fixture
def store(store_url):
    with Store.open(store_url) as s:
        yield s


def entry(n: int = 0, **kw) -> AuditEntry:
    return AuditEntry(source=kw.pop("source", "api"), actions=[{"action": "turn_on", "n": n}],
                      results=[{"device": "lamp", "ok": True}], **kw)


def raw_execute(url: str, sql: str) -> None:
    """Run SQL on the store's database behind its back (to check what the database itself enforces)."""
    if url.startswith("sqlite:"):
        c = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
        try:
            c.execute(sql)
        finally:
            c.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as c:
            c.execute(sql)


def test_empty_store(store):
    assert store.load_states("home") == {}
    assert store.audit("home") == []
    assert store.last_seq("home") == 0


def test_commit_writes_states_and_audit_together(store):
    before = datetime.now(UTC)
    seq = store.commit("home", {"lamp": {"on_off": "on", "level": 40}, "fan": {"on_off": "on"}},
                       entry(1, utterance="turn on"))
    assert seq >= 1 and store.last_seq("home") == seq
    assert store.load_states("home") == {"lamp": {"on_off": "on", "level": 40}, "fan": {"on_off": "on"}}
    [rec] = store.audit("home")
    assert (rec.seq, rec.home, rec.source, rec.utterance) == (seq, "home", "api", "turn on")
    assert rec.actions == [{"action": "turn_on", "n": 1}] and rec.results == [{"device": "lamp", "ok": True}]
    assert rec.time.tzinfo is not None and rec.time.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= rec.time <= datetime.now(UTC) + timedelta(seconds=1)
    # A later commit replaces the full state of the devices it names and leaves the others alone.
    seq2 = store.commit("home", {"lamp": {"on_off": "off", "level": 40}}, entry(2))
    assert seq2 > seq
    assert store.load_states("home") == {"lamp": {"on_off": "off", "level": 40}, "fan": {"on_off": "on"}}


def test_a_failed_command_is_audited_without_state(store):
    store.commit("home", {"lamp": {"on_off": "on"}}, entry())
    seq = store.commit("home", {}, AuditEntry("assistant", [{"action": "fly"}], [{"ok": False, "error": "no"}]))
    assert store.load_states("home") == {"lamp": {"on_off": "on"}}
    assert store.audit("home")[-1].seq == seq and store.audit("home")[-1].results[0]["ok"] is False


def test_korean_round_trips(store):
    home = "우리 집"
    state = {"on_off": "on", "mode": "냉방", "note": "거실 에어컨 🌡 24°C"}
    utterance = "거실 에어컨 24도로 맞춰줘"
    store.init_states(home, {"안방_조명": {"on_off": "off"}})
    store.commit(home, {"거실_에어컨": state}, AuditEntry("assistant", [{"target": {"device": "거실 에어컨"}}],
                                                         [{"device": "거실_에어컨", "ok": True}], utterance))
    assert store.load_states(home) == {"거실_에어컨": state, "안방_조명": {"on_off": "off"}}
    [rec] = store.audit(home)
    assert rec.home == home and rec.utterance == utterance
    assert rec.actions == [{"target": {"device": "거실 에어컨"}}] and rec.results[0]["device"] == "거실_에어컨"
    assert store.audit("우리") == [] and store.load_states("우리") == {}


def test_init_states_seeds_missing_devices_only(store):
    store.commit("home", {"lamp": {"on_off": "on"}}, entry())
    got = store.init_states("home", {"lamp": {"on_off": "off"}, "fan": {"on_off": "off"}})
    assert got == {"lamp": {"on_off": "on"}, "fan": {"on_off": "off"}}
    assert store.load_states("home") == got
    assert len(store.audit("home")) == 1  # seeding is not a command


def test_homes_are_separate(store):
    a = store.commit("a", {"lamp": {"on_off": "on"}}, entry())
    b = store.commit("b", {"lamp": {"on_off": "off"}}, entry())
    assert store.load_states("a") == {"lamp": {"on_off": "on"}}
    assert store.load_states("b") == {"lamp": {"on_off": "off"}}
    assert [r.seq for r in store.audit("a")] == [a] and [r.seq for r in store.audit("b")] == [b]
    assert store.last_seq("a") == a and store.last_seq("b") == b


def test_audit_paging(store):
    seqs = [store.commit("home", {}, entry(i)) for i in range(25)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 25
    assert [r.seq for r in store.audit("home", limit=10)] == seqs[-10:]  # the newest, oldest first
    assert [r.seq for r in store.audit("home", limit=10, after_seq=0)] == seqs[:10]
    assert [r.seq for r in store.audit("home", limit=10, after_seq=seqs[9])] == seqs[10:20]
    assert [r.actions[0]["n"] for r in store.audit("home", limit=100, after_seq=seqs[19])] == list(range(20, 25))
    assert store.audit("home", after_seq=seqs[-1]) == []
    for bad in (0, -1, 10**6):
        with pytest.raises(StoreError, match="audit page"):
            store.audit("home", limit=bad)


def test_a_failing_transaction_writes_nothing(store, monkeypatch):
    store.commit("home", {"lamp": {"on_off": "off"}, "fan": {"on_off": "off"}}, entry())

    def boom(cx, row):
        raise RuntimeError("crash between the state writes and the audit row")

    monkeypatch.setattr(store, "_insert_audit", boom)
    with pytest.raises(RuntimeError):
        store.commit("home", {"lamp": {"on_off": "on"}, "fan": {"on_off": "on"}}, entry())
    monkeypatch.undo()
    assert store.load_states("home") == {"lamp": {"on_off": "off"}, "fan": {"on_off": "off"}}
    assert len(store.audit("home")) == 1
    store.commit("home", {"lamp": {"on_off": "on"}}, entry())  # the store is still usable
    assert store.load_states("home")["lamp"] == {"on_off": "on"}


def test_values_that_are_not_json_are_refused_before_writing(store):
    for bad in ({"level": float("nan")}, {"when": datetime.now()}, {"s": {1, 2}}):
        with pytest.raises(StoreError, match="not plain JSON"):
            store.commit("home", {"ok": {"on_off": "on"}, "bad": bad}, entry())
    with pytest.raises(StoreError, match="not plain JSON"):
        store.commit("home", {}, AuditEntry("api", [{"x": object()}], []))
    with pytest.raises(StoreError, match="source"):
        store.commit("home", {}, AuditEntry("", [], []))
    with pytest.raises(StoreError, match="home name"):
        store.commit("", {}, entry())
    assert store.load_states("home") == {} and store.audit("home") == []


def test_the_audit_log_is_append_only(store, store_url):
    store.commit("home", {}, entry())
    for sql in ("UPDATE ondol_audit SET source = 'forged'", "DELETE FROM ondol_audit"):
        with pytest.raises(Exception, match="append-only"):
            raw_execute(store_url, sql)
    assert [r.source for r in store.audit("home")] == ["api"]


def test_state_survives_reopening(store_url):
    with Store.open(store_url) as s:
        s.init_states("home", {"lamp": {"on_off": "off"}})
        first = s.commit("home", {"lamp": {"on_off": "on"}}, entry())
    with Store.open(store_url) as s:
        assert s.init_states("home", {"lamp": {"on_off": "off"}}) == {"lamp": {"on_off": "on"}}
        assert s.commit("home", {}, entry()) > first
        assert [r.seq for r in s.audit("home")][0] == first


def test_concurrent_commits_from_threads_and_two_stores(store_url):
    # Two stores on one database stand in for two processes; each is shared by two threads.
    stores = [Store.open(store_url), Store.open(store_url)]
    seqs: list[int] = []
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(15):
                seqs.append(stores[t % 2].commit("home", {f"d{t}": {"n": i}, "shared": {"by": t, "n": i}}, entry(i)))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    states = stores[0].load_states("home")
    assert {k: v["n"] for k, v in states.items() if k != "shared"} == {f"d{t}": 14 for t in range(4)}
    audit = stores[1].audit("home", limit=1000)
    assert sorted(seqs) == [r.seq for r in audit] and len(set(seqs)) == 60
    for s in stores:
        s.close()


def test_closed_store_says_so(store_url):
    s = Store.open(store_url)
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.load_states("home")


def test_newer_schema_is_refused(store_url):
    Store.open(store_url).close()
    raw_execute(store_url, "UPDATE ondol_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99"):
        Store.open(store_url)


def test_sqlite_durability_settings(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'h.db'}") as s:
        assert isinstance(s, SQLiteStore)
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_sqlite_memory_and_bare_path(tmp_path, monkeypatch):
    with Store.open("sqlite:///:memory:") as s:
        s.commit("home", {"lamp": {"on_off": "on"}}, entry())
        assert s.load_states("home") == {"lamp": {"on_off": "on"}}
    monkeypatch.chdir(tmp_path)
    with Store.open("sqlite:///relative.db") as s:
        s.commit("home", {}, entry())
    with Store.open(str(tmp_path / "bare.db")) as s:
        s.commit("home", {}, entry())
    assert (tmp_path / "relative.db").is_file() and (tmp_path / "bare.db").is_file()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:secret@host/db", "unsupported store URL 'mysql://u:\\*\\*\\*@host/db'.*'mysql'"),
        ("redis://localhost", "unsupported store URL.*sqlite:///"),
        ("", "empty"),
        ("sqlite://", "names no file"),
        ("sqlite:////nonexistent-ondol-dir/home.db", "directory /nonexistent-ondol-dir does not exist"),
    ],
)
def test_bad_urls(url, message):
    with pytest.raises(StoreError, match=message) as info:
        Store.open(url)
    assert isinstance(info.value, HomeError) and isinstance(info.value, OndolError) and "secret" not in str(info.value)


def test_not_a_database_file(tmp_path):
    (tmp_path / "notes.db").write_text("this is not a database\n" * 100)
    with pytest.raises(StoreError, match="cannot open the SQLite store"):
        Store.open(f"sqlite:///{tmp_path / 'notes.db'}")


def test_unreachable_postgres_is_a_clear_error():
    from tests.services import free_port

    with pytest.raises(StoreError, match="cannot connect to the PostgreSQL store postgresql://ondol:\\*\\*\\*@") as info:
        Store.open(f"postgresql://ondol:secret@127.0.0.1:{free_port()}/home")
    assert "secret" not in str(info.value)
