"""Fault injection: ПОС failing, losing responses and rate limiting, calls registered once."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.integration.flows.conftest import OPERATOR, StartFlow, call_body

CALLS = 250


@pytest.mark.slow
async def test_every_call_is_registered_exactly_once_despite_faults(
        start_flow: StartFlow, fast_retries: None) -> None:
    # The simulator ignores Idempotency-Key here, so only the adapter's lookup before a
    # retry prevents a duplicate after a lost response: the strictest test of exactly-once.
    flow = await start_flow(
        error_rate=0.2, lost_response_rate=0.05, rate_limit_rate=0.05,
        retry_after_seconds=1, seed=20261123, idempotency=False)
    semaphore = asyncio.Semaphore(16)

    async def take(n: int) -> str:
        async with semaphore:
            body = call_body(flow.clock.now(), journal_id=f"FAULT-{n:04d}")
            response = await flow.client.post("/api/v1/calls", json=body, headers=OPERATOR)
            assert response.status == 201, await response.text()
            appeal_id: str = (await response.json())["id"]
            return appeal_id

    ids = await asyncio.gather(*(take(n) for n in range(CALLS)))

    await flow.drain_all(timeout_s=60)

    stats = await flow.sim_stats()
    assert stats["faults"].get("5xx", 0) > 0
    assert stats["faults"].get("lost", 0) > 0
    assert stats["faults"].get("429", 0) > 0
    assert stats["duplicates"] == 0
    assert stats["messages"] == CALLS
    assert stats["creates_by_key"] == dict.fromkeys(ids, 1)
    outbox = await flow.gw.outbox.stats()
    assert outbox.by_state.get("dead", 0) == 0
    assert outbox.by_state.get("done", 0) == CALLS

    status = await flow.status()
    assert status["appeals"]["by_status"] == {"registered": CALLS}
    seen_numbers: Counter[str] = Counter()
    for appeal_id in ids:
        appeal = await flow.get(appeal_id)
        assert appeal["status"] == "registered"
        message = flow.pos_message(appeal["external"]["id"])
        assert message.external_id == appeal_id
        seen_numbers[appeal["external"]["number"]] += 1
    assert len(seen_numbers) == CALLS
