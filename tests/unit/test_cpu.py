"""Threads: one per physical core unless told otherwise."""

from __future__ import annotations

import os

import pytest
import torch

from ondol.cpu import physical_cores
from ondol.errors import InvalidRequestError
from ondol.llm import LLM


def test_physical_cores_counts_cores_this_process_may_use():
    n = physical_cores()
    assert 1 <= n <= len(os.sched_getaffinity(0))


def test_llm_sets_threads_and_refuses_nonsense(tiny_model_dir):
    before = torch.get_num_threads()
    try:
        LLM(tiny_model_dir, threads=1, progress=False, kv_cache_bytes=1 << 20)
        assert torch.get_num_threads() == 1
        LLM(tiny_model_dir, progress=False, kv_cache_bytes=1 << 20)
        assert torch.get_num_threads() == physical_cores()
        with pytest.raises(InvalidRequestError, match="threads"):
            LLM(tiny_model_dir, threads=0, progress=False)
    finally:
        torch.set_num_threads(before)
