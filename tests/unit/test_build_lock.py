"""The kernels' build lock: a build killed halfway (torch's ``lock`` file left behind) must not make
every later process wait forever, and a live build must still keep a second one out."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import textwrap

from ondol.quant import build


def test_a_leftover_lock_file_is_removed(tmp_path):
    (tmp_path / "lock").write_bytes(b"")  # what a build killed by SIGKILL leaves
    with build._build_lock(tmp_path):
        assert not (tmp_path / "lock").exists()


def test_a_live_build_holds_the_lock(tmp_path):
    # A child holds the lock (as a building process would) until we close its stdin.
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from ondol.quant import build
        with build._build_lock(Path({str(tmp_path)!r})):
            print("held", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with open(tmp_path / ".ondol-build", "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                took = True
            except BlockingIOError:
                took = False
        assert not took, "a second process took the lock while a build held it"
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    with open(tmp_path / ".ondol-build", "a+b") as handle:  # and it is free once that build ends
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
