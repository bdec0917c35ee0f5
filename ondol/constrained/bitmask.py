"""Applying a grammar's token bitmask to logits, on the CPU.

A bitmask row is int32 [ceil(V/32)]: bit ``t % 32`` (least significant first) of word ``t // 32`` is
set when token ``t`` is allowed, as llguidance writes it. ``apply_bitmask`` is the fast path
(numpy's unpackbits, ~2x the plain version at 128k tokens: docs/constrained-decoding-libraries.md);
``apply_bitmask_reference`` is the plain-PyTorch reference the tests hold it to.
"""

from __future__ import annotations

import numpy as np
import torch


def allocate_bitmask(rows: int, vocab_size: int) -> torch.Tensor:
    """An all-allowed bitmask [rows, ceil(V/32)] int32."""
    return torch.full((rows, (vocab_size + 31) // 32), -1, dtype=torch.int32)


def unpack_bitmask(row: torch.Tensor, vocab_size: int) -> np.ndarray:
    """A bitmask row as bool [V]: True where the token is allowed."""
    return np.unpackbits(row.numpy().view(np.uint8), count=vocab_size, bitorder="little").view(np.bool_)


def apply_bitmask(logits: torch.Tensor, row: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Float logits [V] with every token the row disallows set to -inf (a new tensor: the model's
    logits are inference tensors). ``row`` is a bitmask row, or one already unpacked by
    ``unpack_bitmask``."""
    allowed = row if isinstance(row, np.ndarray) else unpack_bitmask(row, logits.shape[-1])
    return logits.masked_fill(torch.from_numpy(~allowed), float("-inf"))


def apply_bitmask_reference(logits: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    vocab = logits.shape[-1]
    shifts = torch.arange(32, dtype=torch.int32)
    allowed = ((row.unsqueeze(-1) >> shifts) & 1).bool().flatten()[:vocab]
    return logits.masked_fill(~allowed, float("-inf"))
