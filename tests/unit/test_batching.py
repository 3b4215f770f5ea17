"""Group commit: who waits together, and what each waiter learns."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from gateway.services.batching import Batcher


class Recorder:
    """A flush that records its batches; odd items fail alone, "boom" fails the batch."""

    def __init__(self) -> None:
        self.batches: list[list[int | str]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def flush(self, items: Sequence[int | str]) -> list[str | BaseException]:
        self.batches.append(list(items))
        await self.gate.wait()
        if "boom" in items:
            raise RuntimeError("the transaction failed")
        return [ValueError(item) if isinstance(item, int) and item % 2 else f"ok {item}"
                for item in items]


async def test_a_lone_item_is_written_at_once() -> None:
    recorder = Recorder()
    batcher: Batcher[int | str, str] = Batcher(recorder.flush)

    assert await batcher.submit(2) == "ok 2"
    assert recorder.batches == [[2]]


async def test_items_arriving_while_a_batch_is_written_go_together_in_the_next() -> None:
    recorder = Recorder()
    batcher: Batcher[int | str, str] = Batcher(recorder.flush)
    recorder.gate.clear()
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0)  # the writer takes 0 and waits on the gate
    later = [asyncio.create_task(batcher.submit(n)) for n in (2, 4, 6)]
    await asyncio.sleep(0)

    recorder.gate.set()

    assert await asyncio.gather(first, *later) == ["ok 0", "ok 2", "ok 4", "ok 6"]
    assert recorder.batches == [[0], [2, 4, 6]]


async def test_each_waiter_gets_its_own_outcome() -> None:
    recorder = Recorder()
    batcher: Batcher[int | str, str] = Batcher(recorder.flush)

    results = await asyncio.gather(*(batcher.submit(n) for n in range(4)),
                                   return_exceptions=True)

    assert results[0] == "ok 0" and results[2] == "ok 2"
    assert isinstance(results[1], ValueError) and isinstance(results[3], ValueError)


async def test_a_failed_batch_fails_only_the_item_that_sank_it() -> None:
    recorder = Recorder()
    batcher: Batcher[int | str, str] = Batcher(recorder.flush)
    recorder.gate.clear()
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0)  # the writer takes 0 and waits on the gate: the rest go together
    together = [asyncio.create_task(batcher.submit(item)) for item in (2, "boom", 4)]
    await asyncio.sleep(0)

    recorder.gate.set()
    results = await asyncio.gather(first, *together, return_exceptions=True)

    assert results[:2] == ["ok 0", "ok 2"] and results[3] == "ok 4"
    assert isinstance(results[2], RuntimeError)
    assert recorder.batches == [[0], [2, "boom", 4], [2], ["boom"], [4]]


async def test_each_item_of_a_failed_batch_keeps_its_own_outcome() -> None:
    recorder = Recorder()
    batcher: Batcher[int | str, str] = Batcher(recorder.flush)

    results = await asyncio.gather(batcher.submit("boom"), batcher.submit(2),
                                   batcher.submit(3), return_exceptions=True)

    assert isinstance(results[0], RuntimeError)
    assert results[1] == "ok 2"
    assert isinstance(results[2], ValueError)  # its own failure, not the batch's
    assert await batcher.submit(4) == "ok 4"


async def test_batches_are_capped() -> None:
    recorder = Recorder()
    batcher: Batcher[int | str, str] = Batcher(recorder.flush, max_batch=3)

    await asyncio.gather(*(batcher.submit(n * 2) for n in range(7)))

    assert [len(b) for b in recorder.batches] == [3, 3, 1]


async def test_a_waiter_that_gives_up_does_not_take_its_item_back() -> None:
    recorder = Recorder()
    batcher: Batcher[int | str, str] = Batcher(recorder.flush)
    recorder.gate.clear()
    impatient = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)

    impatient.cancel()
    recorder.gate.set()
    await batcher.aclose()

    assert recorder.batches == [[2]]


async def test_close_waits_for_what_was_submitted_then_refuses_more() -> None:
    recorder = Recorder()
    batcher: Batcher[int | str, str] = Batcher(recorder.flush)
    recorder.gate.clear()
    pending = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)
    closing = asyncio.create_task(batcher.aclose())
    await asyncio.sleep(0)
    assert not closing.done()

    recorder.gate.set()
    await closing

    assert pending.result() == "ok 2"
    with pytest.raises(RuntimeError, match="closed"):
        await batcher.submit(4)
