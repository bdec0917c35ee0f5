"""Where a server's API key comes from, and the command-line flags that say so.

Precedence: ``--api-key KEY``, then ``--api-key-file FILE``, then the ``ONDOL_API_KEY``
environment variable (secrets conventionally travel that way, and stay out of ``ps``). A server
that can move devices (``ondol home serve``, ``ondol serve --home``) never runs without one: with
none given it generates a key on first start and keeps it, mode 0600, beside the home's store
(``<store>.api-key``), so the next start finds the same key. ``--no-auth`` turns the key off, and
is accepted only with a loopback ``--host``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ondol.errors import InvalidRequestError

ENV_VAR = "ONDOL_API_KEY"
HOME_MAX_BODY = 1 << 20  # 64 actions or a 1000-character command fit many times over
SERVE_MAX_BODY = 8 << 20  # a whole context of text, with room for JSON escapes and n prompts
MAX_KEY_CHARS = 512


@dataclass(frozen=True)
class KeySource:
    key: str | None
    where: str  # "--api-key", "--api-key-file PATH", "ONDOL_API_KEY", "PATH (generated now)", "PATH", "none"
    generated: bool = False


def add_access_flags(p: argparse.ArgumentParser, *, body_default: int) -> None:
    p.add_argument("--api-key", metavar="KEY", help=f"require this key (default: the ${ENV_VAR} environment "
                                                    "variable; a home server generates one and keeps it)")
    p.add_argument("--api-key-file", metavar="FILE", help="read the key from FILE (its first line)")
    p.add_argument("--no-auth", action="store_true",
                   help="serve without a key (only with a loopback --host; anyone on this machine can then use it)")
    p.add_argument("--allowed-origin", action="append", default=[], metavar="URL",
                   help="also answer browser requests from this origin, e.g. https://ui.example.com (repeatable)")
    p.add_argument("--open-metrics", action="store_true", help="serve /metrics without the key (for a scraper)")
    p.add_argument("--max-body-size", type=_size, default=body_default, metavar="SIZE",
                   help=f"largest request body accepted, e.g. 8M (default {body_default >> 20}M)")


def add_home_serve_parser(cmds: argparse._SubParsersAction, assistant_flags: Callable) -> None:
    """``ondol home serve``, registered beside ``ondol home``'s other commands (parsing imports no
    server code; running it does)."""
    serve = cmds.add_parser("serve", help="serve the home's web dashboard and API (needs its API key)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--mqtt", metavar="URL", help="reach the devices over MQTT (mqtt://host:1883) instead of "
                                                     "the in-process simulator")
    assistant_flags(serve)
    add_access_flags(serve, body_default=HOME_MAX_BODY)
    serve.set_defaults(run=_serve_dashboard)


def _serve_dashboard(args: argparse.Namespace) -> int:
    from ondol.server.dashboard import serve_dashboard

    return serve_dashboard(args)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    try:
        value = int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512K, 8M)") from None
    if value < 1024:
        raise argparse.ArgumentTypeError(f"must be at least 1K, not {text!r}")
    return value


def resolve_key(args: argparse.Namespace, *, generate_at: Path | None) -> KeySource:
    """The key ``args`` ask for. ``generate_at``: where a home server keeps its generated key
    (None: plain ``ondol serve``, which runs without a key unless given one)."""
    given = [name for name, v in (("--api-key", args.api_key), ("--api-key-file", args.api_key_file)) if v]
    if args.no_auth:
        if given:
            raise InvalidRequestError(f"--no-auth and {given[0]} contradict each other: choose one.")
        if not is_loopback(args.host):
            raise InvalidRequestError(f"--no-auth is only allowed with a loopback --host (127.0.0.1, ::1 or "
                                      f"localhost), not {args.host!r}: anyone who can reach the port could "
                                      "then use the server.")
        return KeySource(None, "none")
    if len(given) == 2:
        raise InvalidRequestError("give --api-key or --api-key-file, not both.")
    if args.api_key:
        return KeySource(_checked(args.api_key, "--api-key"), "--api-key")
    if args.api_key_file:
        path = Path(args.api_key_file)
        return KeySource(_read_key(path, f"--api-key-file {path}"), f"--api-key-file {path}")
    env = os.environ.get(ENV_VAR)
    if env is not None:
        return KeySource(_checked(env, ENV_VAR), ENV_VAR)
    if generate_at is None:
        return KeySource(None, "none")
    if generate_at.exists():
        return KeySource(_read_key(generate_at, str(generate_at)), str(generate_at))
    return KeySource(_generate(generate_at), str(generate_at), generated=True)


def access_from_args(args: argparse.Namespace, key: KeySource) -> Any:
    """The shell's Access for these flags and this key."""
    from ondol.server.shell import Access

    for origin in args.allowed_origin:
        u = urlsplit(origin)
        if u.scheme not in ("http", "https") or not u.netloc or u.path not in ("", "/") or u.query:
            raise InvalidRequestError(f"--allowed-origin {origin!r}: give an origin such as https://ui.example.com "
                                      "(scheme, host and optional port, no path).")
    return Access(api_key=key.key, host=args.host, allowed_origins=tuple(args.allowed_origin),
                  max_body_bytes=args.max_body_size, open_metrics=args.open_metrics)


def key_path_for(home_id: str, store: object) -> Path:
    """``<store>.api-key`` beside a SQLite store; in ondol's data directory for PostgreSQL."""
    path = getattr(store, "path", None)
    if path and path != ":memory:":
        p = Path(path)
        return p.with_name(p.stem + ".api-key")
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "ondol" / "homes"
    return base / f"{home_id}.api-key"


def _checked(key: str, where: str) -> str:
    key = key.strip()
    if not key:
        raise InvalidRequestError(f"{where}: the API key is empty.")
    if len(key) > MAX_KEY_CHARS or any(c.isspace() or not c.isprintable() for c in key):
        raise InvalidRequestError(f"{where}: an API key is up to {MAX_KEY_CHARS} printable characters without spaces.")
    return key


def _read_key(path: Path, where: str) -> str:
    try:
        st = path.stat()
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InvalidRequestError(f"{where}: the key file is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
                                      f"run `chmod 600 {path}`.")
        if st.st_size > 4096:
            raise InvalidRequestError(f"{where}: a key file holds one line, not {st.st_size} bytes.")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidRequestError(f"{where}: cannot read the key file: {e}.") from None
    return _checked(text.splitlines()[0] if text.strip() else "", where)


def _generate(path: Path) -> str:
    key = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never over another key
    except FileExistsError:
        return _read_key(path, str(path))  # another server started at the same moment
    except OSError as e:
        raise InvalidRequestError(f"cannot write a new API key to {path}: {e}; give one with --api-key-file.") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    return key
