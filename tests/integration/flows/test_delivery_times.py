"""Times an operator reports after the call (a callback try, the answer's delivery) lie
between the call and now: anything else is refused by field and never reaches ПОС."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from gateway.clock import ManualClock
from tests.integration.flows.conftest import DELIVERY, OPERATOR, Flow, StartFlow, now_minute

# The year 1 at +14:00 and the year 9999 at -14:00 cannot even be written in UTC.
UNREPRESENTABLE = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]


async def _post(flow: Flow, path: str, body: dict[str, Any],
                headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    response = await flow.client.post(path, json=body, headers=headers)
    return response.status, await response.json()


async def _answered(start_flow: StartFlow) -> tuple[Flow, str]:
    flow = await start_flow(ManualClock(now_minute()))
    appeal_id, _ = await flow.answered_call()
    return flow, appeal_id


@pytest.mark.parametrize("delivered_at", ["2100-01-01T12:00:00+03:00", "1990-05-01T12:00:00Z",
                                          *UNREPRESENTABLE])
async def test_an_implausible_delivery_time_is_refused_and_not_sent_to_pos(
    start_flow: StartFlow, delivered_at: str,
) -> None:
    flow, appeal_id = await _answered(start_flow)
    outbox_before = await flow.outbox_rows(appeal_id)

    status, body = await _post(flow, f"/api/v1/calls/{appeal_id}/delivery",
                               {"channel": "phone", "delivered_at": delivered_at}, DELIVERY)

    assert status == 422, body
    assert "delivered_at" in body["error"]["fields"]
    assert (await flow.get(appeal_id))["status"] == "answer_ready"
    assert await flow.deliveries(appeal_id) == []
    assert await flow.outbox_rows(appeal_id) == outbox_before


@pytest.mark.parametrize("at", ["1990-05-01T12:00:00+03:00", "2100-01-01T00:00:00Z",
                                *UNREPRESENTABLE])
async def test_an_implausible_attempt_time_is_refused(start_flow: StartFlow, at: str) -> None:
    flow, appeal_id = await _answered(start_flow)

    status, body = await _post(flow, f"/api/v1/calls/{appeal_id}/attempts",
                               {"channel": "phone", "outcome": "busy", "at": at}, OPERATOR)

    assert status == 422, body
    assert "at" in body["error"]["fields"]
    assert await flow.deliveries(appeal_id) == []
    assert (await flow.appeal_row(appeal_id))["callback_attempts"] == 0


async def test_a_delivery_a_little_ahead_of_the_operators_clock_is_accepted(
    start_flow: StartFlow,
) -> None:
    flow, appeal_id = await _answered(start_flow)
    ahead = flow.clock.now() + timedelta(minutes=3)  # the operator's clock runs fast

    status, body = await _post(
        flow, f"/api/v1/calls/{appeal_id}/delivery",
        {"channel": "phone", "delivered_at": ahead.isoformat()}, DELIVERY)

    assert status == 200, body
    assert body["status"] == "delivered"
    assert datetime.fromisoformat(body["delivered_at"]) == ahead
