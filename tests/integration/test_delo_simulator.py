"""The Дело adapter against the Дело-Web simulator over loopback: the contract end to end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from adapters.delo.client import DeloClient
from adapters.delo.simulator import (
    DeloSimulatorSettings,
    DeloState,
    RunningSimulator,
    start_simulator,
)
from gateway.domain.appeal import (
    Appeal,
    AppealStatus,
    Applicant,
    DeliveryChannel,
    Urgency,
)
from gateway.domain.ports import ExternalUpdate, UpdatesPage
from gateway.domain.route import DeloTarget, Route, TargetSystem
from outbox import Permanent, Transient
from tests import builders

ROUTE = Route(
    system=TargetSystem.DELO,
    executor="Комитет ЖКХ",
    # As config/routing.toml's rule for «Уборка снега»; the simulator's dictionaries match.
    delo=DeloTarget(rubric_code="ЖКХ-02", executor_due="0.2EZ47.2EZ49.",
                    controller_due="0.2EZ47.2EZ48."),
)


def make_appeal(**changes: Any) -> Appeal:
    """Routed to «Дело», with ids of its own: the simulator keeps every card registered."""
    fresh = {"id": str(uuid.uuid4()), "journal_id": f"J-{uuid.uuid4().hex[:8]}", "route": ROUTE}
    return builders.make_appeal(**(fresh | changes))


@dataclass
class Sim:
    url: str
    state: DeloState
    control: httpx.AsyncClient

    def client(self, **options: Any) -> DeloClient:
        return DeloClient(self.url, "gateway", "gateway", timeout_s=5.0, **options)

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.control.post(path, json=body)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def get(self, path: str) -> dict[str, Any]:
        response = await self.control.get(path)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


SimFactory = Callable[..., Awaitable[Sim]]


@pytest.fixture
async def start_sim() -> AsyncIterator[SimFactory]:
    running: list[RunningSimulator] = []
    controls: list[httpx.AsyncClient] = []

    async def start(**settings: Any) -> Sim:
        simulator = await start_simulator(settings=DeloSimulatorSettings(**settings))
        running.append(simulator)
        control = httpx.AsyncClient(base_url=simulator.url)
        controls.append(control)
        return Sim(simulator.url, simulator.state, control)

    yield start
    for control in controls:
        await control.aclose()
    for simulator in running:
        await simulator.close()


async def drain(client: DeloClient, cursor: str | None, limit: int = 50
                ) -> tuple[list[ExternalUpdate], str | None, int]:
    """One poll cycle: pages until the feed says "no more now"; updates, resume point, pages."""
    updates: list[ExternalUpdate] = []
    pages = 0
    while True:
        page: UpdatesPage = await client.fetch_updates(cursor, limit)
        pages += 1
        updates += page.updates
        if page.next_cursor is None:
            return updates, page.resume_from, pages
        cursor = page.next_cursor


async def test_call_goes_from_card_to_answer_to_control_removed(start_sim: SimFactory) -> None:
    sim = await start_sim()
    appeal = make_appeal()
    async with sim.client() as client:
        ref = await client.register(appeal)
        assert ref.system == "delo" and ref.number and ref.number.endswith("-ОГ")

        card = await sim.get(f"/_sim/cards/{ref.id}")
        assert card["card"]["CONTROL_STATE"] == 1
        assert card["card"]["CITO"] == 1
        assert card["card"]["PLAN_DATE"] == "2026-11-30T00:00:00"
        assert card["card"]["DOC_DATE"] == "2026-11-23T00:00:00"
        assert f"{{gw:{appeal.id}}}" in card["card"]["ANNOTAT"]
        assert card["citizen"]["CITIZEN_SURNAME"] == "Смирнов Олег Петрович"
        assert card["rubrics"][0]["DUE_RUBRIC"] == "0.2F10."
        [resolution] = card["resolutions"]
        assert resolution["DUE_CONTROLLER"] == "0.2EZ47.2EZ48."
        assert resolution["CONTROL_STATE"] == 1
        [reply] = card["replies"]
        assert reply["DUE"] == "0.2EZ47.2EZ49." and reply["REPLY_DATE"] is None

        pending, cursor, _ = await drain(client, None)
        assert [(u.appeal_id, u.status) for u in pending] == [(appeal.id, "in_progress")]

        with pytest.raises(Permanent, match="no executed REPLY"):
            await client.confirm_delivery(ref.id, DeliveryChannel.PHONE, datetime.now(UTC))

        await sim.post("/_sim/reply", {"isn_doc": int(ref.id), "text": "Отопление включено."})
        ready, cursor, _ = await drain(client, cursor)
        [update] = ready
        assert update.status == AppealStatus.ANSWER_READY.value
        assert update.external_id == ref.id and update.appeal_id == appeal.id
        assert update.answer is not None and update.answer.text == "Отопление включено."

        await client.confirm_delivery(ref.id, DeliveryChannel.PHONE, datetime.now(UTC),
                                      comment="Заявитель уведомлён")
        card = await sim.get(f"/_sim/cards/{ref.id}")
        assert card["card"]["CONTROL_STATE"] == 0
        assert card["resolutions"][0]["CONTROL_STATE"] == 0
        assert "по телефону" in card["resolutions"][0]["RESUME"]
        # Confirming again changes nothing and does not fail.
        await client.confirm_delivery(ref.id, DeliveryChannel.PHONE, datetime.now(UTC))
        again = await client.register(appeal, lookup_first=True)
        assert (again.id, again.stage) == (ref.id, "control_removed")
    assert (await sim.get("/_sim/stats"))["cards"] == 1


async def test_extension_updates_planned_completion(start_sim: SimFactory) -> None:
    sim = await start_sim()
    appeal = make_appeal(urgency=Urgency.CONTROL)
    # No overlap: every row here is seconds old, and the last poll must read nothing again.
    async with sim.client(overlap_s=0) as client:
        ref = await client.register(appeal)
        first, cursor, _ = await drain(client, None)
        assert first[0].planned_completion == date(2026, 11, 30)
        await sim.post("/_sim/extend", {"appeal_id": appeal.id, "plan_date": "2026-12-08"})
        extended, cursor, _ = await drain(client, cursor)
        assert [(u.external_id, u.planned_completion) for u in extended] == [
            (ref.id, date(2026, 12, 8))
        ]
        again, _, _ = await drain(client, cursor)
        assert again == []


async def test_executors_answer_on_the_clock(start_sim: SimFactory) -> None:
    sim = await start_sim(reply_after_s=0.2, reply_text="Ответ подготовлен.")
    async with sim.client() as client:
        appeal = make_appeal()
        await client.register(appeal)
        await asyncio.sleep(0.3)
        updates, _, _ = await drain(client, None)
        assert [(u.appeal_id, u.status) for u in updates] == [(appeal.id, "answer_ready")]
        assert updates[0].answer is not None
        assert updates[0].answer.text == "Ответ подготовлен."


async def test_expired_session_is_renewed(start_sim: SimFactory) -> None:
    for mode in ("401", "redirect"):
        sim = await start_sim(expired_session=mode)
        async with sim.client() as client:
            await client.register(make_appeal())
            await sim.post("/_sim/expire-sessions", {})
            await client.register(make_appeal())
        stats = await sim.get("/_sim/stats")
        assert stats["cards"] == 2 and stats["counters"]["logins"] == 2


async def test_wrong_password_is_a_configuration_error(start_sim: SimFactory) -> None:
    sim = await start_sim()
    async with DeloClient(sim.url, "gateway", "wrong") as client:
        with pytest.raises(Permanent, match="configuration"):
            await client.register(make_appeal())


async def test_unknown_executor_is_refused_and_nothing_is_created(start_sim: SimFactory) -> None:
    sim = await start_sim()
    route = replace(ROUTE, delo=DeloTarget("ЖКХ-02", "0.9ZZ.", "0.2EZ47.2EZ48."))
    async with sim.client() as client:
        with pytest.raises(Permanent, match="changeset refused"):
            await client.register(make_appeal(route=route))
    stats = await sim.get("/_sim/stats")
    assert (stats["cards"], stats["citizens"], stats["resolutions"]) == (0, 0, 0)


async def test_known_citizen_is_reused(start_sim: SimFactory) -> None:
    sim = await start_sim()
    async with sim.client() as client:
        await client.register(make_appeal())
        await client.register(make_appeal())
        namesake = Applicant(last_name="Смирнов", first_name="Иван", phone="+79001234567")
        await client.register(make_appeal(applicant=namesake))
    assert (await sim.get("/_sim/stats"))["citizens"] == 2


async def test_poll_pages_through_many_changes_by_key(start_sim: SimFactory) -> None:
    sim = await start_sim()
    # No overlap: every row here is seconds old, so it would re-read them all each cycle.
    async with sim.client(overlap_s=0) as client:
        appeals = [make_appeal() for _ in range(23)]
        for appeal in appeals:
            await client.register(appeal)
        _, cursor, pages = await drain(client, None, limit=5)
        assert pages == 5  # 23 rows, most in the same second: ties cross page borders
        for appeal in appeals[::2]:
            await sim.post("/_sim/reply", {"appeal_id": appeal.id})
        ready, cursor, _ = await drain(client, cursor, limit=5)
        assert sorted(u.appeal_id or "" for u in ready) == sorted(a.id for a in appeals[::2])
        assert all(u.status == "answer_ready" for u in ready)
        # A fresh adapter (another replica, a restart) recovers appeal ids from the cards.
    async with sim.client() as fresh:
        again, _, _ = await drain(fresh, None, limit=100)
        assert {u.appeal_id for u in again} == {a.id for a in appeals}


@pytest.mark.slow
async def test_faults_leave_every_call_registered_exactly_once(start_sim: SimFactory) -> None:
    sim = await start_sim(error_rate=0.2, lost_response_rate=0.05, throttle_rate=0.05,
                          retry_after_s=0, latency_s=0.002, seed=20261123)
    appeals = [make_appeal() for _ in range(300)]
    outcomes: dict[str, int] = {}

    async def register_until_done(client: DeloClient, appeal: Appeal) -> None:
        for attempt in range(100):
            try:
                # As the outbox does: every retry says an earlier try may have landed.
                await client.register(appeal, lookup_first=attempt > 0)
                return
            except Transient as exc:  # Ambiguous included: the outbox would retry
                outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
                await asyncio.sleep(min(exc.retry_after or 0.0, 0.01))
        raise AssertionError("never registered")

    async with sim.client() as client:
        for start in range(0, len(appeals), 25):
            await asyncio.gather(*(register_until_done(client, a)
                                   for a in appeals[start:start + 25]))
    stats = await sim.get("/_sim/stats")
    assert stats["duplicates"] == {}
    assert stats["cards"] == len(appeals)
    assert set(stats["cards_by_appeal"]) == {a.id for a in appeals}
    assert stats["counters"]["lost"] > 0 and outcomes.get("Ambiguous", 0) > 0
