"""An official's answer recorded by hand and an extension of the official's term, over the
API [004: 10.2–10.3] (contract: POST /api/v1/calls/{id}/answer, .../extension)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.integration.flows.conftest import ANIMALS, DELIVERY, OPERATOR, Flow, StartFlow


async def email_call(flow: Flow) -> str:
    appeal_id: str = (await flow.post_call(topic=ANIMALS))["id"]
    await flow.drain()
    return appeal_id


async def post(flow: Flow, path: str, body: dict[str, Any],
               headers: dict[str, str] = OPERATOR) -> tuple[int, dict[str, Any]]:
    response = await flow.client.post(path, json=body, headers=headers)
    return response.status, await response.json()


async def test_an_answer_by_phone_makes_the_call_ready_and_is_refused_once_delivered(
        start_flow: StartFlow) -> None:
    flow = await start_flow()
    appeal_id = await email_call(flow)
    body = {"text": "Отлов назначен на 25.11.", "source": "phone",
            "received_at": flow.clock.now().isoformat(), "by": "Иванова А.А."}

    status, answered = await post(flow, f"/api/v1/calls/{appeal_id}/answer", body)

    assert (status, answered["status"]) == (200, "answer_ready")
    assert (await flow.get(appeal_id))["answer"]["text"] == "Отлов назначен на 25.11."
    assert (await flow.deliver(appeal_id))[0] == 200
    status, refused = await post(flow, f"/api/v1/calls/{appeal_id}/answer", body)
    assert (status, refused["error"]["code"]) == (409, "answer_closed")
    # Only operators record answers; a bad body is 422 with its fields.
    assert (await post(flow, f"/api/v1/calls/{appeal_id}/answer", body, DELIVERY))[0] == 403
    status, invalid = await post(flow, f"/api/v1/calls/{appeal_id}/answer",
                                 {"text": "", "source": "pigeon"})
    assert status == 422 and {"text", "source"} <= set(invalid["error"]["fields"])


async def test_an_extension_moves_the_term_up_to_five_working_days_from_the_request(
        start_flow: StartFlow) -> None:
    flow = await start_flow()
    appeal_id = await email_call(flow)
    row = await flow.appeal_row(appeal_id)
    sent_at: datetime = row["request_sent_at"]
    until = row["request_due_at"] + timedelta(days=1)

    status, extended = await post(flow, f"/api/v1/calls/{appeal_id}/extension", {
        "until": until.isoformat(), "reason": "Нужен выезд на место", "letter_ref": "№ 12"})

    assert status == 200, extended
    assert datetime.fromisoformat(extended["deadlines"]["request_due_at"]) == until
    history = (await flow.get(appeal_id))["history"]
    assert "extension until" in history[-1]["note"]
    status, refused = await post(flow, f"/api/v1/calls/{appeal_id}/extension", {
        "until": (sent_at + timedelta(days=30)).isoformat(), "reason": "Долгая проверка"})
    assert (status, refused["error"]["code"]) == (409, "extension_limit")
    assert "until" in refused["error"]["fields"]


async def test_an_extension_without_a_request_sent_is_a_conflict(start_flow: StartFlow) -> None:
    flow = await start_flow()
    appeal_id = (await flow.post_call())["id"]  # routed to ПОС, no request by e-mail

    status, refused = await post(flow, f"/api/v1/calls/{appeal_id}/extension", {
        "until": (flow.clock.now() + timedelta(days=1)).isoformat(), "reason": "Причина"})

    assert (status, refused["error"]["code"]) == (409, "no_request")
