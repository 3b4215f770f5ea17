"""Callbacks [001: 13]: a missed callback is tried twice more 30–60 minutes apart, then the
supervisor is asked to step in; every try and every confirmation is audited."""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.clock import ManualClock
from tests.integration.flows.conftest import StartFlow, now_minute


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_failed_callbacks_are_rescheduled_then_flagged_for_the_supervisor(
        start_flow: StartFlow) -> None:
    clock = ManualClock(now_minute())
    flow = await start_flow(clock)
    appeal_id, _ = await flow.answered_call()
    other_id, _ = await flow.answered_call()

    tries = []
    for n, outcome in enumerate(("no_answer", "busy", "unreachable"), start=1):
        clock.advance(timedelta(minutes=45))
        tried_at = clock.now()
        status, body = await flow.attempt(appeal_id, outcome)
        assert status == 201, body
        assert body["attempts"] == n
        tries.append((tried_at, body))

    for tried_at, body in tries[:2]:
        assert body["needs_supervisor"] is False
        next_at, next_by = _at(body["next_attempt_at"]), _at(body["next_attempt_by"])
        assert next_at == tried_at + timedelta(minutes=30)
        assert next_by == tried_at + timedelta(minutes=60)
    last = tries[2][1]
    assert last["needs_supervisor"] is True
    assert last["next_attempt_at"] is None and last["next_attempt_by"] is None

    worklist = await flow.ready()
    assert [item["id"] for item in worklist][:1] == [appeal_id]  # the supervisor's first
    flagged = next(item for item in worklist if item["id"] == appeal_id)
    assert flagged["needs_supervisor"] is True
    assert flagged["attempts"] == 3
    assert flagged["next_attempt_at"] is None
    calm = next(item for item in worklist if item["id"] == other_id)
    assert calm["needs_supervisor"] is False and calm["attempts"] == 0

    appeal = await flow.get(appeal_id)
    assert appeal["status"] == "answer_ready"
    assert [d["outcome"] for d in appeal["deliveries"]] == ["no_answer", "busy", "unreachable"]


async def test_a_fourth_try_is_refused_once_the_supervisor_is_flagged(
        start_flow: StartFlow) -> None:
    clock = ManualClock(now_minute())
    flow = await start_flow(clock)
    appeal_id, _ = await flow.answered_call()
    for outcome in ("no_answer", "busy", "unreachable"):
        clock.advance(timedelta(minutes=45))
        status, _body = await flow.attempt(appeal_id, outcome)
        assert status == 201

    clock.advance(timedelta(minutes=45))
    status, body = await flow.attempt(appeal_id, "no_answer")

    assert status == 409, body
    assert body["error"]["code"] == "attempts_exhausted"  # [001: 13] three tries in all
    appeal = await flow.get(appeal_id)
    assert len(appeal["deliveries"]) == 3


async def test_the_first_failed_try_schedules_the_next_one_30_to_60_minutes_later(
        start_flow: StartFlow) -> None:
    clock = ManualClock(now_minute())
    flow = await start_flow(clock)
    appeal_id, _ = await flow.answered_call()
    tried_at = clock.now() - timedelta(minutes=3)  # recorded a little after the call

    status, body = await flow.attempt(appeal_id, "no_answer", at=tried_at)

    assert status == 201, body
    assert body["needs_supervisor"] is False
    assert _at(body["next_attempt_at"]) == tried_at + timedelta(minutes=30)
    assert _at(body["next_attempt_by"]) == tried_at + timedelta(minutes=60)
    item = next(i for i in await flow.ready() if i["id"] == appeal_id)
    assert _at(item["next_attempt_at"]) == tried_at + timedelta(minutes=30)
    assert item["attempts"] == 1


async def test_attempts_before_the_answer_is_ready_are_409(start_flow: StartFlow) -> None:
    flow = await start_flow()
    appeal_id, _ = await flow.registered_call()

    status, body = await flow.attempt(appeal_id, "no_answer")

    assert status == 409
    assert body["error"]["code"] == "answer_not_ready"
    assert await flow.deliveries(appeal_id) == []
    row = await flow.appeal_row(appeal_id)
    assert row["callback_attempts"] == 0 and row["needs_supervisor"] is False


async def test_invalid_attempts_are_422(start_flow: StartFlow) -> None:
    flow = await start_flow()
    appeal_id, _ = await flow.answered_call()

    status, body = await flow.attempt(appeal_id, "shouted_at_us")

    assert status == 422
    assert "outcome" in body["error"]["fields"]


async def test_every_attempt_and_confirmation_is_in_the_audit_log(start_flow: StartFlow) -> None:
    clock = ManualClock(now_minute())
    flow = await start_flow(clock)
    appeal_id, _ = await flow.answered_call()
    clock.advance(timedelta(minutes=10))
    await flow.attempt(appeal_id, "no_answer")
    clock.advance(timedelta(minutes=40))
    await flow.attempt(appeal_id, "busy")
    clock.advance(timedelta(minutes=35))
    status, _ = await flow.deliver(appeal_id, "phone", by="Петрова Е.В.")
    assert status == 200
    await flow.drain()

    audit = await flow.audit(appeal_id)
    attempts = [a for a in audit if a["action"] == "delivery.attempt_failed"]
    assert [a["detail"]["outcome"] for a in attempts] == ["no_answer", "busy"]
    assert all(a["actor"] == "operator" for a in attempts)
    recorded = [a for a in audit if a["action"] == "delivery.recorded"]
    assert len(recorded) == 1
    detail = recorded[0]["detail"]
    assert detail["channel"] == "phone"
    assert detail["by"] == "Петрова Е.В."
    assert detail["source"] == "gateway"
    assert _at(detail["delivered_at"]) == clock.now()
    assert recorded[0]["actor"] == "delivery"
    confirmed = [a for a in audit if a["action"] == "delivery.confirmed_remote"]
    assert [(a["actor"], a["detail"]["channel"]) for a in confirmed] == [("pos", "phone")]
    # The audit log holds no applicant data.
    assert "Пряников" not in str(audit) and "79175551234" not in str(audit)
