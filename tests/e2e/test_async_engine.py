import asyncio

import pytest

from ondol import LLM, SamplingParams
from ondol.engine.async_engine import AsyncEngine, EngineStoppedError, QueueFullError
from ondol.errors import InvalidRequestError


@pytest.fixture(scope="module")
def llm(tiny_model_dir):
    return LLM(tiny_model_dir, dtype="float32")


async def collect(engine, rid, prompt, params):
    return [o async for o in engine.generate(rid, prompt, params)]


def test_concurrent_requests_stream_and_match_sync(llm):
    params = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8], list(range(10, 40))]

    async def main():
        engine = AsyncEngine(llm.engine)
        await engine.start()
        results = await asyncio.gather(*(collect(engine, f"r{i}", p, params) for i, p in enumerate(prompts)))
        await engine.shutdown(1)
        return results

    results = asyncio.run(main())
    for p, outs in zip(prompts, results):
        assert outs[-1].finished and outs[-1].finish_reason == "length"
        assert sum((o.token_ids for o in outs), []) == llm.generate(p, params).token_ids
        assert "".join(o.text for o in outs) == llm.generate(p, params).text
    assert llm.engine.stats.num_kv_blocks_used == 0


def test_consumer_leaving_aborts_and_bad_input_raises(llm):
    async def main():
        engine = AsyncEngine(llm.engine, max_waiting=0)
        await engine.start()
        with pytest.raises(QueueFullError):
            await collect(engine, "full", [1, 2], SamplingParams(max_tokens=2))
        engine.max_waiting = 10
        with pytest.raises(InvalidRequestError):
            await collect(engine, "bad", [], SamplingParams(max_tokens=2))
        gen = engine.generate("leaver", [1, 2, 3], SamplingParams(max_tokens=500, ignore_eos=True))
        await gen.__anext__()
        await gen.aclose()
        for _ in range(100):
            if not llm.engine.has_unfinished_requests():
                break
            await asyncio.sleep(0.01)
        assert llm.engine.stats.num_kv_blocks_used == 0
        # Shutdown aborts what does not finish in the grace period, and the listener hears of it.
        task = asyncio.create_task(collect(engine, "long", [1, 2, 3], SamplingParams(max_tokens=10**4, ignore_eos=True)))
        await asyncio.sleep(0.2)
        await engine.shutdown(0.3)
        outs = await asyncio.wait_for(task, 5)
        assert outs[-1].finish_reason in ("abort", "length")
        with pytest.raises(EngineStoppedError):
            await collect(engine, "late", [1], SamplingParams(max_tokens=1))

    asyncio.run(main())
    assert llm.engine.stats.num_kv_blocks_used == 0
