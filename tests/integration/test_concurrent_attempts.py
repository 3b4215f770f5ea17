"""[001: 13] three callback tries in all, also when operators press the button at once.

Issue 12 found eight concurrent tries on PostgreSQL all answered 201 with the counter at 1
(each read the appeal before the others wrote). The unit of work locks the appeal it
loads for writing, so the tries queue and the rule holds on both databases.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import update

from gateway.storage.tables import appeals
from tests.conftest import FIXED_NOW, OPERATOR, RunningApi, StartApi, valid_call


async def _answer_ready(api: RunningApi) -> str:
    response = await api.client.post("/api/v1/calls", json=valid_call(), headers=OPERATOR)
    assert response.status == 201, await response.text()
    appeal_id: str = (await response.json())["id"]
    # Set up directly: the answer came back from ПОС (the flows test that path end to end).
    async with api.gateway.engine.begin() as conn:
        await conn.execute(update(appeals).where(appeals.c.id == appeal_id).values(
            status="answer_ready", answer_text="Ответ готов"))
    return appeal_id


async def test_concurrent_failed_callbacks_never_exceed_three_tries(
        start_api: StartApi, database_url: str) -> None:
    api = await start_api(database_url)
    appeal_id = await _answer_ready(api)

    async def attempt(n: int) -> int:
        # Tries typed in from notes, 40 minutes apart: each far enough from the others.
        at = FIXED_NOW - timedelta(minutes=40 * n)
        response = await api.client.post(f"/api/v1/calls/{appeal_id}/attempts",
                                          json={"outcome": "no_answer", "at": at.isoformat()},
                                          headers=OPERATOR)
        return response.status

    statuses = await asyncio.gather(*(attempt(n) for n in range(8)))

    assert sorted(statuses) == [201, 201, 201, 409, 409, 409, 409, 409]
    appeal = await (await api.client.get(f"/api/v1/calls/{appeal_id}", headers=OPERATOR)).json()
    assert [d["outcome"] for d in appeal["deliveries"]] == ["no_answer"] * 3
    worklist = await (await api.client.get("/api/v1/deliveries", headers=OPERATOR)).json()
    [item] = worklist["items"]
    assert item["attempts"] == 3 and item["needs_supervisor"] is True


async def test_concurrent_tries_at_the_same_moment_count_once(
        start_api: StartApi, database_url: str) -> None:
    """[001: 13] «с интервалом 30-60 минут»: the same try pressed twice is one try."""
    api = await start_api(database_url)
    appeal_id = await _answer_ready(api)

    async def attempt() -> tuple[int, str]:
        response = await api.client.post(f"/api/v1/calls/{appeal_id}/attempts",
                                          json={"outcome": "no_answer"}, headers=OPERATOR)
        body = await response.json()
        return response.status, body.get("error", {}).get("code", "")

    results = await asyncio.gather(*(attempt() for _ in range(4)))

    assert sorted(results) == [(201, ""), (409, "too_soon"), (409, "too_soon"),
                               (409, "too_soon")]
