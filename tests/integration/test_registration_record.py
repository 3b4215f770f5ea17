"""Recording registrations that come back at the same moment, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, update

from gateway.domain.appeal import AppealStatus
from gateway.domain.ports import ExternalRef
from gateway.storage.tables import appeal_status_history, appeals, audit_log
from outbox import Permanent
from tests.conftest import OPERATOR, RunningApi, StartApi, valid_call


async def _accepted(api: RunningApi, n: int) -> list[str]:
    ids = []
    for i in range(n):
        response = await api.client.post("/api/v1/calls", headers=OPERATOR,
                                         json=valid_call(journal_id=f"KRS-2026-2{i:05d}"))
        assert response.status == 201
        ids.append((await response.json())["id"])
    return ids


async def test_registrations_recorded_together_move_each_appeal_once(
    start_api: StartApi, database_url: str
) -> None:
    api = await start_api(database_url)
    engine = api.gateway.engine
    ids = await _accepted(api, 6)
    ahead = ids[0]  # the poller saw this one first and moved it further
    async with engine.begin() as conn:
        await conn.execute(update(appeals).where(appeals.c.id == ahead)
                           .values(status=AppealStatus.IN_PROGRESS.value))
    forwarding = api.gateway.forwarding
    refs = {appeal_id: ExternalRef("pos", str(100 + n), f"ПОС-2026-{100 + n}", "registration")
            for n, appeal_id in enumerate(ids)}

    results = await asyncio.gather(
        *(forwarding.record_registration(appeal_id, ref) for appeal_id, ref in refs.items()),
        forwarding.record_registration("no-such-appeal", ExternalRef("pos", "999")),
        return_exceptions=True)

    assert results[:6] == [None] * 6
    assert isinstance(results[6], Permanent)
    async with engine.connect() as conn:
        rows = {r.id: r for r in await conn.execute(select(appeals))}
        registered = [r.appeal_id for r in await conn.execute(
            select(appeal_status_history.c.appeal_id)
            .where(appeal_status_history.c.status == "registered"))]
        audited = [r.appeal_id for r in await conn.execute(
            select(audit_log.c.appeal_id).where(audit_log.c.action == "call.registered"))]
    for appeal_id, ref in refs.items():
        row = rows[appeal_id]
        assert (row.external_system, row.external_id, row.external_number) == (
            "pos", ref.id, ref.number)
    assert rows[ahead].status == "in_progress"  # never moved backwards
    assert {rows[i].status for i in ids[1:]} == {"registered"}
    assert sorted(registered) == sorted(ids[1:])  # one history row each, none for `ahead`
    assert sorted(audited) == sorted(ids)


@pytest.mark.parametrize("again", [1, 2])
async def test_a_registration_recorded_again_adds_no_second_history_row(
    start_api: StartApi, database_url: str, again: int
) -> None:
    api = await start_api(database_url)
    [appeal_id] = await _accepted(api, 1)
    ref = ExternalRef("pos", "100", "ПОС-2026-100")

    await asyncio.gather(*(api.gateway.forwarding.record_registration(appeal_id, ref)
                           for _ in range(1 + again)))

    async with api.gateway.engine.connect() as conn:
        history = [r.status for r in await conn.execute(
            select(appeal_status_history.c.status)
            .where(appeal_status_history.c.appeal_id == appeal_id))]
    assert history == ["accepted", "registered"]
