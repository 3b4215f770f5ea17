"""The SLA watch: overdue marks, interim-answer reminders, /status and the overdue list."""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.clock import ManualClock
from tests.integration.flows.conftest import OPERATOR, Flow, StartFlow, now_minute


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def _overdue_ids(flow: Flow) -> set[str]:
    response = await flow.client.get("/api/v1/calls", params={"overdue": "true"},
                                     headers=OPERATOR)
    assert response.status == 200, await response.text()
    return {item["id"] for item in (await response.json())["items"]}


async def _sla_events(flow: Flow, action: str) -> list[str]:
    return [a["appeal_id"] for a in await flow.audit() if a["action"] == action]


async def test_overdue_appeals_are_marked_once_counted_and_listed(start_flow: StartFlow) -> None:
    clock = ManualClock(now_minute())
    # planned_days=0: ПОС never announces an extension, so due_at stays the intake's.
    flow = await start_flow(clock, planned_days=0)
    late = await flow.post_call(urgency="urgent")
    delivered_id, _ = await flow.answered_call(urgency="urgent")
    status, _ = await flow.deliver(delivered_id, "phone")
    assert status == 200
    answered_id, _ = await flow.answered_call(urgency="urgent")  # ready, not yet delivered
    await flow.drain()
    later = await flow.post_call(urgency="control")  # ten calendar days: due later

    due = _at(late["route"]["due_at"])
    assert due > clock.now()
    assert _at(later["route"]["due_at"]) > due

    first = await flow.gw.sla.sweep()
    assert first.overdue == []

    clock.set(due + timedelta(minutes=1))
    swept = await flow.gw.sla.sweep()
    assert set(swept.overdue) == {late["id"], answered_id}
    assert delivered_id not in swept.overdue and later["id"] not in swept.overdue

    again = await flow.gw.sla.sweep()
    assert again.overdue == [] and again.reminded == []

    assert (await flow.status())["appeals"]["overdue"] == 2
    assert await _overdue_ids(flow) == {late["id"], answered_id}
    assert (await flow.get(late["id"]))["deadlines"]["overdue"] is True
    assert (await flow.get(delivered_id))["deadlines"]["overdue"] is False
    overdue_events = await _sla_events(flow, "sla.overdue")
    assert sorted(overdue_events) == sorted([late["id"], answered_id])

    # Much later still: the delivered appeal is never marked, the others only once.
    clock.set(_at(later["route"]["due_at"]) + timedelta(days=30))
    final = await flow.gw.sla.sweep()
    assert final.overdue == [later["id"]]
    assert (await flow.status())["appeals"]["overdue"] == 3
    assert delivered_id not in await _overdue_ids(flow)
    assert sorted(await _sla_events(flow, "sla.overdue")) == sorted(
        [late["id"], answered_id, later["id"]])
    assert "Пряников" not in str(await flow.status())


async def test_the_interim_answer_reminder_comes_before_the_deadline(
        start_flow: StartFlow) -> None:
    clock = ManualClock(now_minute())
    flow = await start_flow(clock, planned_days=0)
    accepted = await flow.post_call(urgency="urgent")
    await flow.drain()
    due = _at(accepted["route"]["due_at"])
    assert due - clock.now() > timedelta(hours=24)

    assert (await flow.gw.sla.sweep()).reminded == []

    clock.set(due - timedelta(hours=3))
    swept = await flow.gw.sla.sweep()
    assert swept.reminded == [accepted["id"]]
    assert swept.overdue == []
    assert (await flow.gw.sla.sweep()).reminded == []  # once
    assert await _sla_events(flow, "sla.interim_answer_due") == [accepted["id"]]
    assert await _overdue_ids(flow) == set()
    assert (await flow.status())["appeals"]["overdue"] == 0

    clock.set(due + timedelta(seconds=1))
    swept = await flow.gw.sla.sweep()
    assert swept.overdue == [accepted["id"]] and swept.reminded == []
    assert await _sla_events(flow, "sla.interim_answer_due") == [accepted["id"]]
    assert await _sla_events(flow, "sla.overdue") == [accepted["id"]]
    event = next(a for a in await flow.audit(accepted["id"]) if a["action"] == "sla.overdue")
    assert event["actor"] == "sla"
    assert _at(event["detail"]["due_at"]) == due


async def test_an_answered_appeal_gets_no_interim_reminder(start_flow: StartFlow) -> None:
    clock = ManualClock(now_minute())
    flow = await start_flow(clock, planned_days=0)
    appeal_id, _ = await flow.answered_call(urgency="urgent")
    due = _at((await flow.get(appeal_id))["route"]["due_at"])

    clock.set(due - timedelta(hours=3))

    assert (await flow.gw.sla.sweep()).reminded == []
    assert await _sla_events(flow, "sla.interim_answer_due") == []
