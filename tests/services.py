"""Throwaway servers for the tests: PostgreSQL and Mosquitto, on 127.0.0.1 and a free port.

Sessions start with no server running, so the tests start their own: each server lives in a fresh
temporary directory, listens only on 127.0.0.1, and is stopped (and its directory removed) when the
context manager exits. The binaries come from Debian packages (``make services`` installs them);
when one is missing, ``ServiceUnavailable`` says which package to install — the tests fail rather
than skip, because the issue wants the store and the MQTT driver tested against the real servers.

    with postgres_server() as url:      # postgresql://postgres@127.0.0.1:PORT/postgres
        ...
    with mosquitto_server() as url:     # mqtt://127.0.0.1:PORT
        ...
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


class ServiceUnavailable(RuntimeError):
    """A test server cannot be started; the message says what to install or where the log is."""


def free_port() -> int:
    """A port nothing listens on right now (the server may still lose a race for it: callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class _Server:
    proc: subprocess.Popen
    log: Path
    stop_signal: int

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def _wait_ready(server: _Server, ready, what: str) -> bool:
    """True once ``ready()`` holds; False if the server exited (e.g. lost the port race)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.05)
    server.stop()
    raise ServiceUnavailable(f"{what} did not become ready in {START_TIMEOUT_S:.0f} s; log {server.log}:\n{server.tail()}")


# --- PostgreSQL -------------------------------------------------------------------------------------


def postgres_bindir() -> Path:
    """The directory holding initdb and postgres: $ONDOL_PG_BINDIR, Debian's layout, or PATH."""
    candidates = [os.environ.get("ONDOL_PG_BINDIR", "")]
    # Debian keeps server binaries off PATH, one directory per major version: take the newest.
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    on_path = shutil.which("initdb")
    candidates.append(str(Path(on_path).parent) if on_path else "")
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "postgres").is_file():
            return Path(c)
    raise ServiceUnavailable(
        "PostgreSQL is not installed (no initdb/postgres found): install the Debian package with "
        "`apt-get install postgresql` (or run `make services`), or set ONDOL_PG_BINDIR."
    )


def _postgres_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` system user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceUnavailable(
            "the tests run as root and PostgreSQL refuses to: there is no `postgres` user to run it as "
            "(the Debian package `postgresql` creates it)."
        ) from None
    return "postgres"


def _pg_ready(port: int) -> bool:
    # A TCP accept is not enough (the postmaster accepts while still recovering): ask for a session.
    try:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@{HOST}:{port}/postgres", connect_timeout=2) as c:
            c.execute("SELECT 1")
        return True
    except Exception:
        return False


@contextmanager
def postgres_server() -> Iterator[str]:
    """A fresh PostgreSQL cluster (trust auth, 127.0.0.1 only); yields its superuser URL."""
    bindir = postgres_bindir()
    user = _postgres_user()
    as_user = {"user": user, "group": user, "extra_groups": []} if user else {}
    # Not under pytest's tmp dir: that is root-only (0700), and the server user must reach its files.
    base = Path(tempfile.mkdtemp(prefix="ondol-pg-"))
    server = None
    try:
        if user:
            shutil.chown(base, user, user)
        data = base / "data"
        log = base / "postgres.log"
        env = {**os.environ, "LC_ALL": "C", "HOME": str(base)}
        # --no-sync only skips fsyncing the freshly created template files; the running server keeps
        # fsync on, because the crash tests rely on committed transactions surviving.
        init = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
             "--no-locale", "--no-sync", "--no-instructions"],
            capture_output=True, text=True, env=env, cwd=base, **as_user,
        )
        if init.returncode != 0:
            raise ServiceUnavailable(f"initdb failed ({init.returncode}):\n{init.stdout}{init.stderr}")
        for _attempt in range(5):
            port = free_port()
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    [str(bindir / "postgres"), "-D", str(data),
                     "-c", f"listen_addresses={HOST}", "-c", f"port={port}",
                     "-c", "unix_socket_directories=",  # TCP only: no socket dir permissions to fight
                     "-c", "max_connections=30", "-c", "shared_buffers=16MB",
                     "-c", "fsync=on", "-c", "synchronous_commit=on"],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=base,
                    start_new_session=True, **as_user,
                )
            # SIGINT = "fast shutdown": roll back sessions, checkpoint, exit.
            server = _Server(proc, log, signal.SIGINT)
            if _wait_ready(server, lambda port=port: _pg_ready(port), "PostgreSQL"):
                break
            server = None  # exited early: most likely the port was taken meanwhile; try another
        else:
            raise ServiceUnavailable(f"PostgreSQL would not start; log {log}:\n{_Server(proc, log, 0).tail()}")
        yield f"postgresql://postgres@{HOST}:{port}/postgres"
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


# --- Mosquitto --------------------------------------------------------------------------------------

# MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s, empty client id) and the CONNACK accepting it.
_MQTT_CONNECT = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 60, 0, 0])
_MQTT_CONNACK_OK = bytes([0x20, 2, 0, 0])
_MQTT_DISCONNECT = bytes([0xE0, 0])


def mosquitto_binary() -> Path:
    for c in (os.environ.get("ONDOL_MOSQUITTO", ""), shutil.which("mosquitto") or "", "/usr/sbin/mosquitto"):
        if c and Path(c).is_file():
            return Path(c)
    raise ServiceUnavailable(
        "Mosquitto is not installed: install the Debian package with `apt-get install mosquitto` "
        "(or run `make services`), or set ONDOL_MOSQUITTO to the broker binary."
    )


def _mqtt_ready(port: int) -> bool:
    # A real MQTT handshake, not just a TCP accept: the broker is ready to route messages.
    try:
        with socket.create_connection((HOST, port), timeout=1) as s:
            s.sendall(_MQTT_CONNECT)
            ok = s.recv(4) == _MQTT_CONNACK_OK
            s.sendall(_MQTT_DISCONNECT)
            return ok
    except OSError:
        return False


@contextmanager
def mosquitto_server() -> Iterator[str]:
    """A Mosquitto broker on 127.0.0.1 (anonymous, no persistence); yields ``mqtt://127.0.0.1:PORT``."""
    binary = mosquitto_binary()
    base = Path(tempfile.mkdtemp(prefix="ondol-mqtt-"))
    server = None
    try:
        log = base / "mosquitto.log"
        for _attempt in range(5):
            port = free_port()
            conf = base / "mosquitto.conf"
            # Started as root, mosquitto reads this file first and then drops to the `mosquitto`
            # user; logging to stderr (our file descriptor) avoids needing a log file it may write.
            conf.write_text(
                f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n"
                # Without it each acknowledged command waits ~40 ms on Nagle's algorithm.
                "set_tcp_nodelay true\n"
                "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
            )
            conf.chmod(0o644)
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    [str(binary), "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, cwd=base, start_new_session=True,
                )
            server = _Server(proc, log, signal.SIGTERM)
            if _wait_ready(server, lambda port=port: _mqtt_ready(port), "Mosquitto"):
                break
            server = None
        else:
            raise ServiceUnavailable(f"Mosquitto would not start; log {log}:\n{_Server(proc, log, 0).tail()}")
        yield f"mqtt://{HOST}:{port}"
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    # Manual use: `python -m tests.services` starts both and prints their URLs until Ctrl-C.
    with postgres_server() as pg, mosquitto_server() as mq:
        print(pg, mq, sep="\n", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
