"""The real ПОС adapter against the simulator over loopback."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from adapters.pos.client import AnswerNotReady, DeliveryConflict, PosClient
from adapters.pos.simulator import PosSimulatorSettings, RunningSimulator, start_simulator
from gateway.domain.appeal import (
    Appeal,
    Applicant,
    DeliveryChannel,
)
from gateway.domain.ports import ExternalRef, ExternalUpdate
from gateway.domain.route import PosTarget, Route, TargetSystem
from outbox import Permanent, Transient
from tests import builders

MSK = timezone(timedelta(hours=3))
TOKEN = "test-token"

Started = tuple[RunningSimulator, PosClient]
Start = Callable[..., Awaitable[Started]]


def make_appeal(appeal_id: str, *, organization_id: int = 5001, category_id: int = 101,
                **changes: Any) -> Appeal:
    """An appeal under `appeal_id`, addressed in ПОС as the test says."""
    pos = PosTarget(category_id=category_id, subcategory_id=10105, organization_id=organization_id)
    route = Route(system=TargetSystem.POS, executor="Минтранс", pos=pos)
    return builders.make_appeal(id=appeal_id, journal_id=f"J-{appeal_id}", route=route, **changes)


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    opened: list[Started] = []

    async def _start(clock: Callable[[], float] | None = None, **settings: Any) -> Started:
        settings.setdefault("stage_seconds", 0)
        config = PosSimulatorSettings(token=TOKEN, **settings)
        running = await (start_simulator(settings=config, clock=clock) if clock
                         else start_simulator(settings=config))
        client = PosClient(running.url, TOKEN, timeout=5.0)
        opened.append((running, client))
        return running, client

    yield _start
    for running, client in opened:
        await client.aclose()
        await running.close()


async def sim_call(running: RunningSimulator, method: str, path: str,
                   json: dict[str, Any] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=running.url) as http:
        return await http.request(method, path, json=json)


async def poll_all(client: PosClient, cursor: str | None,
                   page_size: int = 100) -> tuple[list[ExternalUpdate], str | None]:
    """One poll cycle as the poller will run it."""
    updates: list[ExternalUpdate] = []
    while True:
        page = await client.fetch_updates(cursor, page_size)
        updates.extend(page.updates)
        if page.next_cursor is None:
            return updates, page.resume_from
        cursor = page.next_cursor


async def test_registered_answered_and_delivered_through_the_gateway(start: Start) -> None:
    running, client = await start()

    ref = await client.register(make_appeal("apl-1"))
    assert ref.stage == "moderation" and ref.number and ref.number.startswith("ПОС-")

    _, cursor = await poll_all(client, None)
    await sim_call(running, "POST", "/_sim/advance", {"to": "answer_ready"})
    updates, cursor = await poll_all(client, cursor)

    ready = [u for u in updates if u.external_id == ref.id][-1]
    assert ready.status == "answer_ready" and ready.appeal_id == "apl-1"
    assert ready.answer is not None and ref.number in ready.answer.text

    confirmed_at = datetime(2026, 11, 27, 11, 0, tzinfo=MSK)
    await client.confirm_delivery(ref.id, DeliveryChannel.PHONE, confirmed_at, "перезвонили")
    await client.confirm_delivery(ref.id, DeliveryChannel.PHONE, confirmed_at)  # repeat: fine
    updates, _ = await poll_all(client, cursor)

    delivered = [u for u in updates if u.external_id == ref.id][-1]
    assert delivered.status == "delivered" and delivered.stage == "answer_delivered"
    assert delivered.delivery is not None
    assert delivered.delivery.channel is DeliveryChannel.PHONE
    assert delivered.delivery.confirmed_at == confirmed_at


async def test_the_message_reaches_pos_as_the_contract_says(start: Start) -> None:
    running, client = await start()

    applicant = Applicant(last_name="Иванова", first_name="Мария", phone="+79161234567",
                          postal_address="г. Энск, ул. Заявителей, 1")
    ref = await client.register(make_appeal(
        "apl-2", summary="Яма на дороге", problem_address="г. Энск, ул. Ямная, 13",
        applicant=applicant, received_at=datetime(2026, 11, 23, 9, 15, tzinfo=MSK),
    ))
    stored = (await sim_call(running, "GET", f"/_sim/messages/{ref.id}")).json()

    assert stored["idempotency_key"] == "apl-2"
    body = stored["request"]
    assert body["text"] == "Центр мониторинга 112. Яма на дороге"
    assert body["problem_address"] == "г. Энск, ул. Ямная, 13"
    assert body["applicant"]["address"] == "г. Энск, ул. Заявителей, 1"
    assert body["received_at"].endswith("+03:00")


async def test_delivery_confirmed_directly_in_pos_is_seen_by_the_poller(start: Start) -> None:
    running, client = await start()
    ref = await client.register(make_appeal("apl-3"))
    await sim_call(running, "POST", "/_sim/advance", {"id": int(ref.id), "to": "answer_ready"})
    _, cursor = await poll_all(client, None)

    response = await sim_call(running, "POST", f"/_sim/messages/{ref.id}/confirm",
                              {"channel": "hand", "confirmed_by": "Петров П.П."})
    assert response.status_code == 200
    updates, _ = await poll_all(client, cursor)

    (seen,) = [u for u in updates if u.external_id == ref.id]
    assert seen.status == "delivered"
    assert seen.delivery is not None and seen.delivery.channel is DeliveryChannel.HAND
    assert seen.delivery.confirmed_by == "Петров П.П."

    with pytest.raises(DeliveryConflict):  # the gateway now names another channel
        await client.confirm_delivery(ref.id, DeliveryChannel.PHONE, datetime.now(MSK))


async def test_delivery_before_the_answer_is_ready_is_refused(start: Start) -> None:
    _, client = await start()
    ref = await client.register(make_appeal("apl-4"))

    with pytest.raises(AnswerNotReady):
        await client.confirm_delivery(ref.id, DeliveryChannel.PHONE, datetime.now(MSK))


async def test_an_idempotent_repeat_returns_the_same_message(start: Start) -> None:
    running, client = await start()

    first = await client.register(make_appeal("apl-5"))
    changed = replace(make_appeal("apl-5"), summary="Совсем другой текст")
    again = await client.register(changed)

    assert first.id == again.id
    stats = (await sim_call(running, "GET", "/_sim/stats")).json()
    assert stats["creates_by_key"] == {"apl-5": 1} and stats["idempotent_replays"] == 1


async def test_addressee_rules_are_permanent_refusals(start: Start) -> None:
    _, client = await start(categories={101: [5001, 5002]}, connected_organizations=[5001, 5003])

    await client.register(make_appeal("ok", organization_id=5001))
    with pytest.raises(Permanent, match="organization_not_connected"):
        await client.register(make_appeal("not-connected", organization_id=5002))
    with pytest.raises(Permanent, match="category_not_allowed"):
        await client.register(make_appeal("wrong-category", organization_id=5003))


async def test_a_wrong_token_is_a_configuration_error(start: Start) -> None:
    running, _ = await start()

    async with PosClient(running.url, "wrong") as stranger:
        with pytest.raises(Permanent, match="configuration"):
            await stranger.register(make_appeal("apl-6"))


async def test_a_poll_cycle_costs_pages_of_changes_not_of_open_appeals(start: Start) -> None:
    running, registrar = await start()
    # No overlap: every message here is seconds old, and the overlap would re-read them
    # all; what the overlap costs is measured in the flows (test_pos_flow.py).
    client = PosClient(running.url, TOKEN, timeout=5.0, overlap_s=0)
    refs = [await registrar.register(make_appeal(f"apl-p{i}")) for i in range(120)]
    _, cursor = await poll_all(client, None, page_size=50)

    changed = refs[10:33]
    for ref in changed:
        await sim_call(running, "POST", "/_sim/advance", {"id": int(ref.id)})
    before = running.sim.stats.requests["GET /api/v1/messages"]
    updates, cursor = await poll_all(client, cursor, page_size=10)
    requests = running.sim.stats.requests["GET /api/v1/messages"] - before

    assert {u.external_id for u in updates} >= {r.id for r in changed}
    assert all(u.status == "in_progress" for u in updates if u.external_id in
               {r.id for r in changed})
    # updated_since is inclusive: the last message of the previous cycle is seen again.
    assert len(updates) <= len(changed) + 1
    assert requests <= math.ceil((len(changed) + 1) / 10) + 1

    updates, _ = await poll_all(client, cursor, page_size=10)
    assert len(updates) <= 1  # nothing new; at most the boundary message again
    await client.aclose()


async def test_stages_move_on_the_clock(start: Start) -> None:
    now = [1_800_000_000.0]
    running, client = await start(clock=lambda: now[0], stage_seconds=60,
                                  answer_sent_fraction=0.0, seed=1)
    ref = await client.register(make_appeal("apl-c"))

    now[0] += 61
    running.sim.tick()
    assert running.sim.messages[int(ref.id)].stage == "coordination"
    for _ in range(10):
        now[0] += 61
        running.sim.tick()
    assert running.sim.messages[int(ref.id)].stage == "answer_ready"


async def test_some_messages_are_rejected_or_emailed_by_pos_itself(start: Start) -> None:
    now = [1_800_000_000.0]
    running, client = await start(clock=lambda: now[0], stage_seconds=1,
                                  reject_fraction=0.5, answer_sent_fraction=0.5, seed=3)
    for i in range(20):
        await client.register(make_appeal(f"apl-f{i}"))
    for _ in range(10):
        now[0] += 2
        running.sim.tick()

    updates, _ = await poll_all(client, None)
    statuses = {u.status for u in updates}
    assert statuses == {"rejected", "answer_sent"}
    assert all(u.answer is not None for u in updates)


async def _register_until_done(client: PosClient, appeal: Appeal) -> ExternalRef:
    """What the outbox does: retry transient outcomes, look up on every retry."""
    attempt = 0
    while True:
        try:
            return await client.register(appeal, lookup_first=attempt > 0)
        except Transient:  # Ambiguous included
            attempt += 1
            assert attempt < 100
            await asyncio.sleep(0)


@pytest.mark.parametrize("idempotency", [True, False], ids=["keys-honoured", "keys-ignored"])
async def test_faults_end_with_every_appeal_registered_exactly_once(
    start: Start, idempotency: bool,
) -> None:
    running, client = await start(
        error_rate=0.2, lost_response_rate=0.05, rate_limit_rate=0.05, retry_after_seconds=0,
        latency_jitter_ms=2, seed=20261123, idempotency=idempotency,
    )
    appeals = [make_appeal(f"apl-x{i:04d}") for i in range(400)]
    gate = asyncio.Semaphore(40)

    async def one(appeal: Appeal) -> ExternalRef:
        async with gate:
            return await _register_until_done(client, appeal)

    refs = await asyncio.gather(*(one(a) for a in appeals))

    stats = (await sim_call(running, "GET", "/_sim/stats")).json()
    assert stats["duplicates"] == 0
    assert stats["messages"] == len(appeals)
    assert len({r.id for r in refs}) == len(appeals)
    assert stats["faults"].get("lost", 0) > 0 and stats["faults"].get("5xx", 0) > 0
    assert stats["faults"].get("429", 0) > 0
