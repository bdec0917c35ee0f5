"""Peak memory through loading and a first forward stays within 1.3x the model's runtime size.

Each load runs in a fresh process (benchmarks.load_memory.measure); the kernel's peak RSS (VmHWM)
is compared with the resident set just before loading. docs/engine.md has the figures at 1.1 GB.
"""

import pytest
import torch

from benchmarks.load_memory import measure
from ondol.demo import build


@pytest.mark.parametrize("stored, runtime", [(torch.bfloat16, "bfloat16"), (torch.float32, "bfloat16")])
def test_peak_rss_within_1_3x_of_model_size(tmp_path, stored, runtime):
    folder = build(tmp_path / "m", hidden=1024, layers=6, dtype=stored)
    r = measure(folder, runtime)
    assert r["model_bytes"] > 100 * 2**20
    assert r["ratio_over_baseline"] <= 1.3, r
