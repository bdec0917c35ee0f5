from ondol.engine.block_pool import ROOT_HASH, BlockPool, block_hash


def test_allocate_and_release():
    pool = BlockPool(4, 16)
    a = pool.allocate(3)
    assert len(set(a)) == 3 and pool.num_used == 3
    assert pool.allocate(2) is None and pool.num_used == 3  # nothing changes on failure
    pool.release(a)
    assert pool.num_used == 0 and pool.num_free == 4


def test_prefix_blocks_are_shared_and_evicted_lru():
    pool = BlockPool(4, 2)
    h1 = block_hash(ROOT_HASH, [1, 2])
    h2 = block_hash(h1, [3, 4])
    a = pool.allocate(2)
    pool.cache_block(a[0], h1)
    pool.cache_block(a[1], h2)
    assert pool.match_prefix([h1, h2, block_hash(h2, [5, 6])]) == a  # shared while a is running
    pool.release(a)
    pool.release(a)
    assert pool.num_used == 0
    other = pool.allocate(2)  # plain free blocks go first: the cached prefix survives
    assert set(other).isdisjoint(a)
    assert pool.match_prefix([h1]) == [a[0]]
    pool.release([a[0]])
    # Released in reverse order, the tail block (h2) is the least recently released: evicted first.
    assert pool.allocate(1) == [a[1]]
    assert pool.match_prefix([h1, h2]) == [a[0]]


def test_hash_chains_over_the_whole_prefix():
    assert block_hash(block_hash(ROOT_HASH, [1, 2]), [3, 4]) != block_hash(block_hash(ROOT_HASH, [9, 2]), [3, 4])
    assert block_hash(ROOT_HASH, [12, 3]) != block_hash(ROOT_HASH, [1, 23])


def test_disabled_prefix_caching_never_matches():
    pool = BlockPool(2, 2, enable_prefix_caching=False)
    b = pool.allocate(1)
    h = block_hash(ROOT_HASH, [1, 2])
    pool.cache_block(b[0], h)
    assert pool.match_prefix([h]) == []
