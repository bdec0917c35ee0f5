"""Device state and the append-only audit log, in SQLite (the default) or PostgreSQL.

One rule carries the design: a command's state changes and its audit row are written in **one
transaction** (``Store.commit``). A process killed at any moment (kill -9, power cut) therefore
leaves either the whole command or none of it, and anything ``commit`` returned for is durable.

URLs (``Store.open``):

* ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` (SQLAlchemy's convention), a bare
  file path, or ``sqlite:///:memory:`` (tests). Journal mode WAL, ``synchronous=FULL`` — see
  ``SQLiteStore`` for why FULL and not NORMAL.
* ``postgresql://user@host:port/db`` (or ``postgres://``), through psycopg 3.

Threads: a ``Store`` may be called from any thread; calls are serialised by a lock (one connection
per store). The calls block, so an asyncio server runs them in a worker thread (``asyncio.to_thread``).
Several processes may share one database: commits are serialised by the database (SQLite's write
lock, a PostgreSQL advisory lock), so audit ``seq`` order is commit order and a reader paging with
``after_seq`` never misses a row that commits later with a smaller seq.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ondol.home.errors import HomeError

SCHEMA_VERSION = 1
MAX_AUDIT_PAGE = 10_000


class StoreError(HomeError):
    """The store cannot be opened, read or written; the message names the store and the problem."""


@dataclass(frozen=True)
class AuditEntry:
    """What ``commit`` records about one command, besides the state it changes."""

    source: str  # who asked: "api", "assistant", "mqtt", "cli", ...
    actions: Sequence[Mapping[str, Any]]  # the actions as requested (after target resolution)
    results: Sequence[Mapping[str, Any]]  # one result per device (docs/home.md "Result")
    utterance: str | None = None  # what the person said, when the command came from speech/text


@dataclass(frozen=True)
class AuditRecord:
    """One audit row as read back."""

    seq: int  # store-wide, increasing in commit order; gaps are possible (PostgreSQL sequences)
    time: datetime  # UTC, timezone-aware
    home: str
    source: str
    utterance: str | None
    actions: list[Any] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{netloc[0].split(':', 1)[0]}:***@{netloc[1]}"))


def _dumps(value: Any, what: str) -> str:
    # ensure_ascii=False keeps Korean readable in the database; allow_nan=False because NaN is not
    # JSON (PostgreSQL's jsonb rejects it, and a client reading the audit would choke on it).
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise StoreError(f"cannot store {what}: it is not plain JSON ({e}).") from e


def _check_home(home: str) -> None:
    if not isinstance(home, str) or not home:
        raise StoreError(f"a home name must be a non-empty string, not {home!r}.")


class Store(ABC):
    """State + audit. Open with ``Store.open(url)``; use as a context manager or call ``close()``."""

    url: str  # redacted: safe to show

    def __init__(self, url: str) -> None:
        self.url = _redact(url)
        self._lock = threading.RLock()
        self._closed = False

    # --- opening ----------------------------------------------------------------------------------

    @staticmethod
    def open(url: str) -> Store:
        if not isinstance(url, str) or not url.strip():
            raise StoreError("the store URL is empty: use e.g. sqlite:///home.db or postgresql://host/db.")
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme == "" and not url.startswith(("postgresql:", "postgres:", "sqlite:")):
            return SQLiteStore(url, url)  # a bare path
        if scheme == "sqlite":
            path = url[len("sqlite:///"):] if url.lower().startswith("sqlite:///") else ""
            if not path:
                raise StoreError(f"the SQLite URL {url!r} names no file: use sqlite:///home.db or sqlite:///:memory:.")
            return SQLiteStore(path, url)
        if scheme in ("postgresql", "postgres"):
            return PostgresStore(url)
        raise StoreError(
            f"unsupported store URL {_redact(url)!r}: the scheme {scheme or url.split(':', 1)[0]!r} is not one "
            "ondol knows; use sqlite:///path/to/file.db or postgresql://user@host:port/database."
        )

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the API ----------------------------------------------------------------------------------

    def load_states(self, home: str) -> dict[str, dict[str, Any]]:
        """Every persisted device state of ``home``: device id -> state."""
        _check_home(home)
        with self._op("read device states") as cx:
            rows = cx.execute(self._sql_select_states, (home,)).fetchall()
        return {device: json.loads(state) for device, state in rows}

    def init_states(self, home: str, states: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """Seed devices that have no persisted state yet (e.g. defaults from the home file).

        Persisted states are never overwritten: what a command set survives a restart. Seeding is not a
        command and writes no audit row. Returns ``load_states(home)`` as of after the seeding.
        """
        _check_home(home)
        rows = [(home, str(d), _dumps(dict(s), f"the state of {d!r}")) for d, s in states.items()]
        now = datetime.now(UTC)
        with self._op("seed device states") as cx, self._transaction(cx):
            for h, d, s in rows:
                cx.execute(self._sql_insert_state_if_missing, (h, d, s, self._time_param(now)))
            got = cx.execute(self._sql_select_states, (home,)).fetchall()
        return {device: json.loads(state) for device, state in got}

    def commit(self, home: str, changes: Mapping[str, Mapping[str, Any]], audit: AuditEntry) -> int:
        """Write each device's new **full** state and the audit row in one transaction; return its seq.

        ``changes`` may be empty: a command that failed validation still gets its audit row. When this
        returns, the command is durable; when it raises, nothing of it was written.
        """
        _check_home(home)
        if not isinstance(audit, AuditEntry):
            raise StoreError(f"commit needs an AuditEntry, not {type(audit).__name__}.")
        if not isinstance(audit.source, str) or not audit.source:
            raise StoreError("an audit entry needs a source (e.g. 'api', 'assistant', 'mqtt').")
        # Serialise before the transaction: a bad value fails the call without touching the database.
        states = [(str(d), _dumps(dict(s), f"the state of {d!r}")) for d, s in changes.items()]
        actions = _dumps(list(audit.actions), "the audit actions")
        results = _dumps(list(audit.results), "the audit results")
        now = self._time_param(datetime.now(UTC))
        with self._op("commit a command") as cx, self._transaction(cx):
            self._serialise_writers(cx)
            for device, state in states:
                cx.execute(self._sql_upsert_state, (home, device, state, now))
            return self._insert_audit(cx, (now, home, audit.source, audit.utterance, actions, results))

    def audit(self, home: str, limit: int = 100, after_seq: int | None = None) -> list[AuditRecord]:
        """Audit rows of ``home`` in seq order: the first ``limit`` after ``after_seq``, or the last ``limit``."""
        _check_home(home)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_AUDIT_PAGE:
            raise StoreError(f"an audit page holds 1 to {MAX_AUDIT_PAGE} rows, not {limit!r}.")
        with self._op("read the audit log") as cx:
            if after_seq is None:
                rows = cx.execute(self._sql_audit_last, (home, limit)).fetchall()[::-1]
            else:
                rows = cx.execute(self._sql_audit_after, (home, int(after_seq), limit)).fetchall()
        return [
            AuditRecord(seq=int(seq), time=self._time_value(t), home=h, source=src, utterance=utt,
                        actions=json.loads(acts), results=json.loads(res))
            for seq, t, h, src, utt, acts, res in rows
        ]

    def last_seq(self, home: str) -> int:
        """The seq of the home's newest audit row, 0 if none (where an event stream starts following)."""
        _check_home(home)
        with self._op("read the audit log") as cx:
            (seq,) = cx.execute(self._sql_last_seq, (home,)).fetchone()
        return int(seq or 0)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._close()

    # --- shared plumbing --------------------------------------------------------------------------

    @contextmanager
    def _op(self, what: str) -> Iterator[Any]:
        """The connection, under the lock, with driver errors turned into a ``StoreError``."""
        with self._lock:
            if self._closed:
                raise StoreError(f"the store {self.url} is closed.")
            try:
                yield self._connection()
            except StoreError:
                raise
            except self._driver_errors as e:
                raise StoreError(f"could not {what} in the store {self.url}: {e}".rstrip() + ".") from e

    def _check_schema_version(self, cx: Any) -> None:
        row = cx.execute(self._sql_get_version, ("schema_version",)).fetchone()
        if row is None:
            cx.execute(self._sql_set_version, ("schema_version", str(SCHEMA_VERSION)))
        elif int(row[0]) > SCHEMA_VERSION:
            raise StoreError(
                f"the store {self.url} has schema version {row[0]}, written by a newer ondol; this one "
                f"understands version {SCHEMA_VERSION}. Upgrade ondol or use another store."
            )

    # --- what a backend provides ------------------------------------------------------------------

    _driver_errors: tuple[type[BaseException], ...]
    _sql_select_states: str
    _sql_insert_state_if_missing: str
    _sql_upsert_state: str
    _sql_audit_last: str
    _sql_audit_after: str
    _sql_last_seq: str
    _sql_get_version: str
    _sql_set_version: str

    @abstractmethod
    def _connection(self) -> Any: ...

    @abstractmethod
    def _transaction(self, cx: Any) -> Any: ...

    @abstractmethod
    def _serialise_writers(self, cx: Any) -> None: ...

    @abstractmethod
    def _insert_audit(self, cx: Any, row: tuple[Any, ...]) -> int: ...

    @abstractmethod
    def _time_param(self, t: datetime) -> Any: ...

    @abstractmethod
    def _time_value(self, v: Any) -> datetime: ...

    @abstractmethod
    def _close(self) -> None: ...


# --- SQLite -----------------------------------------------------------------------------------------

_SQLITE_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS ondol_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS ondol_devices (
        home TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL,
        version INTEGER NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (home, id))""",
    # AUTOINCREMENT: a seq is never reused, even for the newest row (plain rowids can be).
    """CREATE TABLE IF NOT EXISTS ondol_audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, home TEXT NOT NULL, source TEXT NOT NULL,
        utterance TEXT, actions TEXT NOT NULL, results TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ondol_audit_home_seq ON ondol_audit (home, seq)",
    """CREATE TRIGGER IF NOT EXISTS ondol_audit_no_update BEFORE UPDATE ON ondol_audit
        BEGIN SELECT RAISE(ABORT, 'ondol_audit is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS ondol_audit_no_delete BEFORE DELETE ON ondol_audit
        BEGIN SELECT RAISE(ABORT, 'ondol_audit is append-only'); END""",
]


class SQLiteStore(Store):
    """SQLite in WAL mode with ``synchronous=FULL``.

    Why FULL: in WAL mode a commit appends the transaction's pages and a commit marker to the WAL.
    With NORMAL, the WAL is fsynced only at checkpoints, so a commit that returned sits in the OS
    page cache: that survives kill -9 of ondol (the kernel still writes it out) but not a power cut or
    kernel crash — and an unplugged hub is the everyday crash of a home device. FULL fsyncs the WAL at
    every commit, so a command the user was told is done stays done. The price is one fsync per
    command, a few milliseconds at human command rates. Torn writes are safe either way: a WAL frame
    without its commit marker is ignored on recovery, so a half-written command never appears.
    """

    _driver_errors = (sqlite3.Error,)
    _sql_select_states = "SELECT id, state FROM ondol_devices WHERE home = ? ORDER BY id"
    _sql_insert_state_if_missing = (
        "INSERT INTO ondol_devices (home, id, state, version, updated_at) VALUES (?, ?, ?, 0, ?) "
        "ON CONFLICT (home, id) DO NOTHING"
    )
    _sql_upsert_state = (
        "INSERT INTO ondol_devices (home, id, state, version, updated_at) VALUES (?, ?, ?, 1, ?) "
        "ON CONFLICT (home, id) DO UPDATE SET state = excluded.state, version = ondol_devices.version + 1, "
        "updated_at = excluded.updated_at"
    )
    _sql_audit_last = (
        "SELECT seq, time, home, source, utterance, actions, results FROM ondol_audit "
        "WHERE home = ? ORDER BY seq DESC LIMIT ?"
    )
    _sql_audit_after = (
        "SELECT seq, time, home, source, utterance, actions, results FROM ondol_audit "
        "WHERE home = ? AND seq > ? ORDER BY seq LIMIT ?"
    )
    _sql_last_seq = "SELECT MAX(seq) FROM ondol_audit WHERE home = ?"
    _sql_get_version = "SELECT value FROM ondol_meta WHERE key = ?"
    _sql_set_version = "INSERT INTO ondol_meta (key, value) VALUES (?, ?)"

    def __init__(self, path: str, url: str) -> None:
        super().__init__(url)
        self.path = path
        where = "in memory" if path == ":memory:" else f"at {Path(path).resolve()}"
        if path != ":memory:" and not Path(path).resolve().parent.is_dir():
            raise StoreError(f"cannot open the SQLite store {where}: the directory {Path(path).resolve().parent} does not exist.")
        self._conn = None
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves (Python's implicit transactions
            # would not cover the whole command). check_same_thread=False: our lock serialises calls.
            # timeout: another process holding the write lock makes us wait, not fail.
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
            self._conn.execute("PRAGMA journal_mode = WAL")  # ":memory:" stays "memory": fine for tests
            self._conn.execute("PRAGMA synchronous = FULL")
            with self._transaction(self._conn):
                # One by one: executescript would COMMIT the open transaction first.
                for stmt in _SQLITE_SCHEMA:
                    self._conn.execute(stmt)
                self._check_schema_version(self._conn)
        except BaseException as e:
            if self._conn is not None:
                self._conn.close()
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"cannot open the SQLite store {where}: {e}.") from e
            raise

    def _connection(self) -> sqlite3.Connection:
        return self._conn

    @contextmanager
    def _transaction(self, cx: sqlite3.Connection) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front: no deadlock upgrading a read lock, and commits from
        # several processes are serialised, so seq order is commit order.
        cx.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            cx.execute("ROLLBACK")
            raise
        cx.execute("COMMIT")

    def _serialise_writers(self, cx: sqlite3.Connection) -> None:
        pass  # BEGIN IMMEDIATE already did

    def _insert_audit(self, cx: sqlite3.Connection, row: tuple[Any, ...]) -> int:
        # lastrowid rather than RETURNING: RETURNING needs SQLite 3.35, older than some devices' systems.
        cur = cx.execute(
            "INSERT INTO ondol_audit (time, home, source, utterance, actions, results) VALUES (?, ?, ?, ?, ?, ?)", row
        )
        return int(cur.lastrowid)

    def _time_param(self, t: datetime) -> str:
        return t.isoformat(timespec="microseconds")

    def _time_value(self, v: str) -> datetime:
        return datetime.fromisoformat(v)

    def _close(self) -> None:
        self._conn.close()


# --- PostgreSQL -------------------------------------------------------------------------------------

# Any fixed number: the advisory lock that serialises ondol's writers (and schema creation).
_PG_WRITER_LOCK = 0x6F6E646F6C  # "ondol"

_PG_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS ondol_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS ondol_devices (
        home TEXT NOT NULL, id TEXT NOT NULL, state JSONB NOT NULL,
        version BIGINT NOT NULL, updated_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (home, id))""",
    """CREATE TABLE IF NOT EXISTS ondol_audit (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, time TIMESTAMPTZ NOT NULL, home TEXT NOT NULL,
        source TEXT NOT NULL, utterance TEXT, actions JSONB NOT NULL, results JSONB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ondol_audit_home_seq ON ondol_audit (home, seq)",
    """CREATE OR REPLACE FUNCTION ondol_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'ondol_audit is append-only'; END $$""",
    """CREATE OR REPLACE TRIGGER ondol_audit_append_only BEFORE UPDATE OR DELETE ON ondol_audit
        FOR EACH ROW EXECUTE FUNCTION ondol_audit_append_only()""",
]


class PostgresStore(Store):
    """PostgreSQL through psycopg 3: JSONB columns, TIMESTAMPTZ times.

    Durability is the server's: with its defaults (fsync on, synchronous_commit on) COMMIT returns
    after the WAL is flushed. A client killed mid-transaction leaves an open transaction that the
    server rolls back when the connection drops.
    """

    _sql_select_states = "SELECT id, state::text FROM ondol_devices WHERE home = %s ORDER BY id"
    _sql_insert_state_if_missing = (
        "INSERT INTO ondol_devices (home, id, state, version, updated_at) VALUES (%s, %s, %s::jsonb, 0, %s) "
        "ON CONFLICT (home, id) DO NOTHING"
    )
    _sql_upsert_state = (
        "INSERT INTO ondol_devices (home, id, state, version, updated_at) VALUES (%s, %s, %s::jsonb, 1, %s) "
        "ON CONFLICT (home, id) DO UPDATE SET state = excluded.state, version = ondol_devices.version + 1, "
        "updated_at = excluded.updated_at"
    )
    _sql_audit_last = (
        "SELECT seq, time, home, source, utterance, actions::text, results::text FROM ondol_audit "
        "WHERE home = %s ORDER BY seq DESC LIMIT %s"
    )
    _sql_audit_after = (
        "SELECT seq, time, home, source, utterance, actions::text, results::text FROM ondol_audit "
        "WHERE home = %s AND seq > %s ORDER BY seq LIMIT %s"
    )
    _sql_last_seq = "SELECT MAX(seq) FROM ondol_audit WHERE home = %s"
    _sql_get_version = "SELECT value FROM ondol_meta WHERE key = %s"
    _sql_set_version = "INSERT INTO ondol_meta (key, value) VALUES (%s, %s)"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        import psycopg  # imported here: SQLite-only installs and tests need not load it

        self._psycopg = psycopg
        self._driver_errors = (psycopg.Error,)
        self._raw_url = url
        self._conn = self._connect()
        try:
            with self._transaction(self._conn):
                self._serialise_writers(self._conn)  # two processes creating the schema at once collide
                for stmt in _PG_SCHEMA:
                    self._conn.execute(stmt)
                self._check_schema_version(self._conn)
        except psycopg.Error as e:
            self._conn.close()
            raise StoreError(f"cannot set up the PostgreSQL store {self.url}: {e}") from e
        except StoreError:
            self._conn.close()
            raise

    def _connect(self) -> Any:
        try:
            # autocommit: transactions are explicit (conn.transaction()), reads need none.
            return self._psycopg.connect(self._raw_url, autocommit=True, connect_timeout=10)
        except self._psycopg.Error as e:
            raise StoreError(f"cannot connect to the PostgreSQL store {self.url}: {str(e).strip()}") from e

    def _connection(self) -> Any:
        # A server restart breaks the connection; the next call reconnects instead of failing forever.
        if self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def _transaction(self, cx: Any) -> Any:
        return cx.transaction()

    def _serialise_writers(self, cx: Any) -> None:
        # Identity values are handed out at INSERT, not at COMMIT: without this lock two writers could
        # commit seq 8 after seq 9, and a reader that already saw 9 would never see 8.
        cx.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_WRITER_LOCK,))

    def _insert_audit(self, cx: Any, row: tuple[Any, ...]) -> int:
        cur = cx.execute(
            "INSERT INTO ondol_audit (time, home, source, utterance, actions, results) "
            "VALUES (%s, %s, %s, %s, %s::jsonb, %s::jsonb) RETURNING seq", row
        )
        return int(cur.fetchone()[0])

    def _time_param(self, t: datetime) -> datetime:
        return t

    def _time_value(self, v: datetime) -> datetime:
        return v.astimezone(UTC)

    def _close(self) -> None:
        self._conn.close()


__all__ = ["AuditEntry", "AuditRecord", "PostgresStore", "SQLiteStore", "Store", "StoreError"]
