"""The machine's CPU as the runtime needs it: how many physical cores this process may use.

Decode streams weights from memory and each matmul splits its rows between threads; a second
hardware thread on the same core adds contention, not bandwidth, so ondol runs one thread per
physical core (llama.cpp's default too).
"""

from __future__ import annotations

import os
from pathlib import Path


def physical_cores() -> int:
    """Distinct (package, core) pairs among the CPUs this process may run on; the number of
    usable CPUs where Linux's topology files are missing."""
    cpus = os.sched_getaffinity(0)
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip()))
        except OSError:
            return len(cpus)
    return len(cores) or len(cpus)
