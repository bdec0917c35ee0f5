"""Building ondol's compiled CPU kernels (csrc/kernels.cpp, csrc/decode.cpp) on the machine that runs them.

The sources (csrc/) ship in the package; the first process that wants the kernels compiles it with the
machine's C++ compiler for the machine's CPU (``-march=native``) through PyTorch's extension
builder, into a cache folder keyed by the source, PyTorch's version and the CPU, and every later
process just loads the library (an flock on the cache folder, so two processes never build at
once and a build killed halfway never blocks the next). The kernels need AVX-512 with BF16 and VNNI; on any other CPU, or without a compiler,
``load()`` says why and ondol runs PyTorch's own kernels instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import shutil
import sys
from pathlib import Path

import torch

CSRC = Path(__file__).with_name("csrc")  # kernels.cpp (the matmuls), decode.cpp (the fused decode step)
# -fopenmp: at::parallel_for is a header template that runs its body on torch's OpenMP threads only
# when the caller is compiled with OpenMP; without it every "parallel" loop ran on one thread. The
# library then shares the libgomp.so.1 torch has already loaded (the same soname), so there is
# one thread pool, torch's.
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fopenmp")
NEEDED_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_vnni", "f16c")


class KernelsUnavailable(RuntimeError):
    pass


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ondol" / "kernels"


_outcome: KernelsUnavailable | bool | None = None  # a library loads once per process, and so does a failure


@contextlib.contextmanager
def _build_lock(folder: Path):
    """Hold an flock on the cache folder while torch's builder runs.

    torch's builder guards a build with a ``lock`` file it creates exclusively and deletes when done;
    a process killed mid-build leaves that file behind and every later process waits on it forever.
    An flock dies with its process, so whoever holds ours knows no live ondol process is building
    here, and a ``lock`` file it finds is such a leftover: it is removed before torch looks."""
    with open(folder / ".ondol-build", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            (folder / "lock").unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load(quiet: bool = False) -> None:
    """Build (once per machine) and load the kernels into torch.ops.ondol, or raise
    KernelsUnavailable with the reason."""
    global _outcome
    if _outcome is None:
        try:
            _build(quiet)
            _outcome = True
        except KernelsUnavailable as e:
            _outcome = e
    if _outcome is not True:
        raise _outcome


def _build(quiet: bool) -> None:
    if platform.machine() not in ("x86_64", "AMD64"):
        raise KernelsUnavailable(f"ondol's compiled kernels are for x86-64 CPUs, not {platform.machine()}")
    missing = [f for f in NEEDED_FLAGS if f not in cpu_flags()]
    if missing:
        raise KernelsUnavailable(f"this CPU lacks {', '.join(missing)}")
    if not (shutil.which("c++") or shutil.which("g++")):
        raise KernelsUnavailable("no C++ compiler (c++ or g++) is installed")
    sources = sorted(CSRC.glob("*.cpp"))
    source = b"".join(p.read_bytes() for p in sorted(CSRC.iterdir()) if p.suffix in (".cpp", ".h"))
    # the folder too: torch's builder rebuilds when the source paths in its build file change, so
    # two checkouts sharing one cache entry would rebuild it for each other in turn
    key = hashlib.sha256(source + str(CSRC).encode() + " ".join(FLAGS).encode() + torch.__version__.encode() +
                         " ".join(sorted(cpu_flags())).encode()).hexdigest()[:16]
    folder = cache_dir() / key
    folder.mkdir(parents=True, exist_ok=True)
    built = any(folder.glob("*.so"))
    if not built and not quiet:
        print("ondol: compiling its CPU kernels for this machine (once; about a minute)...", file=sys.stderr, flush=True)
    from torch.utils import cpp_extension

    try:
        with _build_lock(folder):
            cpp_extension.load(name=f"ondol_kernels_{key}", sources=[str(p) for p in sources], build_directory=str(folder),
                               extra_cflags=list(FLAGS), extra_ldflags=["-fopenmp"], is_python_module=False,
                               verbose=False)
    except (RuntimeError, OSError, ImportError) as e:
        raise KernelsUnavailable(f"compiling {CSRC} failed: {str(e).strip().splitlines()[-1]}") from e
