"""The pool of KV-cache blocks, with prefix caching.

A block holds ``block_size`` consecutive tokens of one request. Once full, it is keyed by a hash
chained over every token id from the start of the sequence (the parent block's hash + this
block's ids), so equal keys mean equal prefixes and therefore equal keys/values. A new request
whose leading blocks hash to cached ones takes those blocks (reference count + 1) instead of
computing them: a shared system prompt or a home's device list is computed once.

Invariants:
* a block is *used* while its reference count is > 0; ``num_used`` counts those;
* a block with count 0 is free: either plain (``_free``) or still holding a cached prefix
  (``_evictable``, least recently released first), which allocation evicts only when no plain
  block is left;
* ``_cached`` maps hash -> block for every block that holds a hashed prefix, used or not.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque

ROOT_HASH = b"ondol"


def block_hash(parent: bytes, token_ids: list[int]) -> bytes:
    """A collision-resistant key for a full block (a server's users must not be able to collide
    prefixes): blake2b over the parent's key and this block's ids."""
    h = hashlib.blake2b(parent, digest_size=16)
    h.update(b",".join(str(t).encode() for t in token_ids))
    return h.digest()


class BlockPool:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        self.num_blocks, self.block_size = num_blocks, block_size
        self.enable_prefix_caching = enable_prefix_caching
        self._ref = [0] * num_blocks
        self._free: deque[int] = deque(range(num_blocks))
        self._evictable: OrderedDict[int, None] = OrderedDict()
        self._cached: dict[bytes, int] = {}
        self._hash_of: dict[int, bytes] = {}
        self.queries = 0  # prompt tokens looked up in the prefix cache
        self.hits = 0  # of those, tokens found

    @property
    def num_free(self) -> int:
        return len(self._free) + len(self._evictable)

    @property
    def num_used(self) -> int:
        return self.num_blocks - self.num_free

    def allocate(self, n: int) -> list[int] | None:
        """n blocks with count 1, or None (and nothing changed) if fewer than n are free."""
        if n > self.num_free:
            return None
        out = []
        for _ in range(n):
            if self._free:
                b = self._free.popleft()
            else:  # evict the least recently released cached prefix
                b, _ = self._evictable.popitem(last=False)
                del self._cached[self._hash_of.pop(b)]
            self._ref[b] = 1
            out.append(b)
        return out

    def release(self, block_ids: list[int]) -> None:
        """Drop one reference to each block. Released in reverse so a request's tail blocks
        (the least shared) are evicted before its head."""
        for b in reversed(block_ids):
            self._ref[b] -= 1
            assert self._ref[b] >= 0, f"block {b} released twice"
            if self._ref[b] == 0:
                if b in self._hash_of:
                    self._evictable[b] = None
                else:
                    self._free.append(b)

    def match_prefix(self, hashes: list[bytes]) -> list[int]:
        """Take (count + 1) the cached blocks for the longest run of leading hashes."""
        if not self.enable_prefix_caching:
            return []
        out = []
        for h in hashes:
            b = self._cached.get(h)
            if b is None:
                break
            if self._ref[b] == 0:
                del self._evictable[b]
            self._ref[b] += 1
            out.append(b)
        return out

    def cache_block(self, block: int, h: bytes) -> None:
        """Record that a just-filled block holds the prefix keyed by h. If another block already
        holds it (two requests computed the same prefix at once), that one stays the cached copy."""
        if self.enable_prefix_caching and h not in self._cached:
            self._cached[h] = block
            self._hash_of[block] = h

    def count_query(self, tokens: int, hit_tokens: int) -> None:
        self.queries += tokens
        self.hits += hit_tokens
