"""A call's whole life through ПОС: intake → registered → answer ready → delivered."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import tenacity

from gateway.services import forwarding
from outbox import RetryPolicy
from tests.integration.flows.conftest import (
    ADMIN,
    APPLICANT,
    DELIVERY,
    OPERATOR,
    PREFIX,
    PROBLEM_ADDRESS,
    SUMMARY,
    StartFlow,
    max_poll_requests,
)


def _confirmations(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if (r["target"], r["action"]) == ("pos", "confirm_delivery")]


async def test_intake_registers_the_call_in_pos_with_the_routes_fields(
        start_flow: StartFlow) -> None:
    flow = await start_flow()
    accepted = await flow.post_call()
    assert accepted["status"] == "accepted"
    assert accepted["route"]["system"] == "pos"

    await flow.drain()

    appeal = await flow.get(accepted["id"])
    assert appeal["status"] == "registered"
    assert appeal["external"]["system"] == "pos"
    message = flow.pos_message(appeal["external"]["id"])
    assert appeal["external"]["number"] == message.number
    sent = message.request
    assert sent["text"] == PREFIX + SUMMARY
    assert sent["external_id"] == accepted["id"]
    # «Отопление»: category 101 / 10101, organization 5011 is subordinate → its parent 5001.
    assert (sent["category_id"], sent["subcategory_id"], sent["organization_id"]) == (
        101, 10101, 5001)
    # The problem's address and the applicant's are kept apart [003].
    assert sent["problem_address"] == PROBLEM_ADDRESS
    assert sent["applicant"]["address"] == APPLICANT["postal_address"]
    assert sent["applicant"]["last_name"] == APPLICANT["last_name"]
    assert sent["applicant"]["phone"] == APPLICANT["phone"]
    assert message.idempotency_key == accepted["id"]
    assert (await flow.sim_stats())["creates_by_key"] == {accepted["id"]: 1}


async def test_answer_ready_then_delivery_by_phone_is_confirmed_to_pos(
        start_flow: StartFlow) -> None:
    flow = await start_flow()
    appeal_id, pos_id = await flow.registered_call()

    await flow.advance(pos_id, "answer_ready")
    await flow.poll()

    appeal = await flow.get(appeal_id)
    assert appeal["status"] == "answer_ready"
    poller = (await flow.status())["pollers"]["pos"]
    assert poller["last_success_at"] is not None and poller["last_error"] is None
    answer_text = flow.pos_message(pos_id).answer["text"]  # type: ignore[index]
    assert appeal["answer"]["text"] == answer_text
    ready = {item["id"]: item for item in await flow.ready()}
    assert appeal_id in ready
    item = ready[appeal_id]
    assert item["answer_text"] == answer_text
    assert item["answer_channel"] == "phone"
    assert item["applicant"]["phone"] == APPLICANT["phone"]
    assert item["external"]["id"] == pos_id
    assert item["attempts"] == 0

    status, body = await flow.deliver(appeal_id, "phone", by="Иванова А.А.")
    assert status == 200, body
    assert body["status"] == "delivered" and body["channel"] == "phone"
    assert appeal_id not in {item["id"] for item in await flow.ready()}

    await flow.drain()

    message = flow.pos_message(pos_id)
    assert message.stage == "answer_delivered"
    assert message.delivery is not None and message.delivery["channel"] == "phone"
    appeal = await flow.get(appeal_id)
    assert appeal["status"] == "delivered"
    assert [(d["channel"], d["outcome"], d["by"], d["source"]) for d in appeal["deliveries"]] == [
        ("phone", "delivered", "Иванова А.А.", "gateway")]

    # ПОС now reports the delivery back; seeing our own confirmation changes nothing.
    await flow.poll()
    await flow.drain()
    assert (await flow.get(appeal_id))["status"] == "delivered"
    confirmations = _confirmations(await flow.outbox_rows(appeal_id))
    assert len(confirmations) == 1 and confirmations[0]["state"] == "done"
    assert len(await flow.deliveries(appeal_id)) == 1
    requests = (await flow.sim_stats())["requests"]
    assert requests.get("POST /api/v1/messages/{id}/delivery") == 1


async def test_delivery_confirmed_directly_in_pos_is_recorded_and_not_sent_back(
        start_flow: StartFlow) -> None:
    flow = await start_flow()
    appeal_id, pos_id = await flow.answered_call()

    await flow.staff_confirm(pos_id, "phone", by="Специалист министерства")
    await flow.poll()
    await flow.drain()

    appeal = await flow.get(appeal_id)
    assert appeal["status"] == "delivered"
    assert appeal["history"][-1]["status"] == "delivered"
    assert appeal["history"][-1]["source"] == "pos"
    recorded = await flow.deliveries(appeal_id)
    assert [(d["channel"], d["outcome"], d["by"], d["source"]) for d in recorded] == [
        ("phone", "delivered", "Специалист министерства", "pos")]
    assert appeal_id not in {item["id"] for item in await flow.ready()}
    # Nothing is sent back to ПОС: it told us itself.
    assert _confirmations(await flow.outbox_rows(appeal_id)) == []
    requests = (await flow.sim_stats())["requests"]
    assert "POST /api/v1/messages/{id}/delivery" not in requests
    # The gateway's own confirmation afterwards is a harmless repeat…
    status, body = await flow.deliver(appeal_id, "phone")
    assert status == 200 and body["result"] == "already_recorded"
    # …and another channel a conflict.
    status, body = await flow.deliver(appeal_id, "email")
    assert status == 409 and body["error"]["code"] == "channel_conflict"
    recorded_actions = [a["action"] for a in await flow.audit(appeal_id)]
    assert "delivery.recorded" in recorded_actions


async def test_delivery_before_the_answer_is_ready_is_409(start_flow: StartFlow) -> None:
    flow = await start_flow()
    appeal_id, pos_id = await flow.registered_call()
    await flow.advance(pos_id, "execution")
    await flow.poll()
    assert (await flow.get(appeal_id))["status"] == "in_progress"

    status, body = await flow.deliver(appeal_id, "phone")

    assert status == 409
    assert body["error"]["code"] == "answer_not_ready"
    assert (await flow.get(appeal_id))["status"] == "in_progress"
    assert _confirmations(await flow.outbox_rows(appeal_id)) == []
    assert await flow.deliveries(appeal_id) == []


async def test_repeated_confirmation_is_200_and_another_channel_is_409(
        start_flow: StartFlow) -> None:
    flow = await start_flow()
    appeal_id, pos_id = await flow.answered_call()

    first = await flow.deliver(appeal_id, "phone")
    again = await flow.deliver(appeal_id, "phone")
    other = await flow.deliver(appeal_id, "post")

    assert first[0] == 200 and first[1]["result"] == "recorded"
    assert again[0] == 200 and again[1]["result"] == "already_recorded"
    assert again[1]["channel"] == "phone"
    assert other[0] == 409 and other[1]["error"]["code"] == "channel_conflict"
    await flow.drain()
    assert len(_confirmations(await flow.outbox_rows(appeal_id))) == 1
    assert len(await flow.deliveries(appeal_id)) == 1
    assert flow.pos_message(pos_id).delivery["channel"] == "phone"  # type: ignore[index]


async def test_unknown_call_is_404_for_delivery_and_attempts(start_flow: StartFlow) -> None:
    flow = await start_flow()
    unknown = "00000000-0000-4000-8000-000000000000"

    status, body = await flow.deliver(unknown, "phone")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await flow.attempt(unknown)
    assert status == 404 and body["error"]["code"] == "not_found"
    response = await flow.client.get(f"/api/v1/calls/{unknown}", headers=DELIVERY)
    assert response.status == 404


async def test_roles_per_the_contract(start_flow: StartFlow) -> None:
    flow = await start_flow()
    appeal_id, _ = await flow.answered_call()
    client = flow.client
    delivery_body = {"channel": "phone"}

    # No token, or a token nobody issued: 401 everywhere but /healthz.
    for headers in ({}, {"Authorization": "Bearer nobody"}, {"Authorization": "Basic op-token"}):
        assert (await client.get("/api/v1/deliveries", headers=headers)).status == 401
        assert (await client.post(f"/api/v1/calls/{appeal_id}/delivery", headers=headers,
                                  json=delivery_body)).status == 401
        assert (await client.post(f"/api/v1/calls/{appeal_id}/attempts", headers=headers,
                                  json={"outcome": "busy"})).status == 401
        assert (await client.get("/status", headers=headers)).status == 401
    assert (await client.get("/healthz")).status == 200

    # The delivery role reads the worklist and calls, but takes no calls and sees no status.
    assert (await client.get("/api/v1/deliveries", headers=DELIVERY)).status == 200
    assert (await client.get(f"/api/v1/calls/{appeal_id}", headers=DELIVERY)).status == 200
    assert (await client.post("/api/v1/calls", headers=DELIVERY, json={})).status == 403
    for headers in (DELIVERY, OPERATOR):
        assert (await client.get("/status", headers=headers)).status == 403
        assert (await client.get("/api/v1/outbox", headers=headers)).status == 403
    # Admin may do everything.
    assert (await client.get("/status", headers=ADMIN)).status == 200
    assert (await client.get("/api/v1/deliveries", headers=ADMIN)).status == 200

    # The delivery role may record a failed callback and the delivery.
    response = await client.post(f"/api/v1/calls/{appeal_id}/attempts", headers=DELIVERY,
                                 json={"outcome": "busy"})
    assert response.status == 201, await response.text()
    response = await client.post(f"/api/v1/calls/{appeal_id}/delivery", headers=DELIVERY,
                                 json=delivery_body)
    assert response.status == 200, await response.text()


async def test_a_poll_cycle_costs_requests_by_changes_not_by_open_appeals(
        start_flow: StartFlow) -> None:
    page_size = 3
    # Without the overlap window: every message here is seconds old, so the window would
    # hold them all; its cost is the next test's.
    flow = await start_flow(page_size=page_size, overlap_s=0)
    registered = [await flow.post_call() for _ in range(14)]
    await flow.drain()
    first = await flow.poll()  # the first cycle reads everything ПОС holds
    assert first.requests <= max_poll_requests(len(registered), page_size)

    pos_ids = [(await flow.get(a["id"]))["external"]["id"] for a in registered]
    changed = pos_ids[:5]
    for pos_id in changed:
        await flow.advance(pos_id, "coordination")

    requests_seen: list[httpx.Request] = []

    async def count(request: httpx.Request) -> None:
        if request.url.path == "/api/v1/messages" and "external_id" not in request.url.params:
            requests_seen.append(request)

    pos_client = flow.gw.pollers["pos"]._source
    http: httpx.AsyncClient = pos_client._http  # type: ignore[attr-defined]
    http.event_hooks["request"].append(count)
    before = (await flow.sim_stats())["requests"].get("GET /api/v1/messages", 0)

    cycle = await flow.poll()

    after = (await flow.sim_stats())["requests"].get("GET /api/v1/messages", 0)
    bound = max_poll_requests(len(changed), page_size)
    assert cycle.requests == len(requests_seen) == after - before
    assert cycle.requests <= bound
    for a in registered[:5]:
        assert (await flow.get(a["id"]))["status"] == "in_progress"
    for a in registered[5:]:
        assert (await flow.get(a["id"]))["status"] == "registered"

    # Nothing changed: one request.
    quiet = await flow.poll()
    assert quiet.requests == 1
    assert quiet.applied == 0


async def test_the_overlap_window_costs_the_changes_made_within_it(
        start_flow: StartFlow) -> None:
    # A cycle re-reads what changed within overlap_s (60 s) before the newest change it had
    # read: ceil((changed + recent) / page) + 1 requests. Re-reads apply nothing.
    page_size = 3
    flow = await start_flow(page_size=page_size)
    registered = [await flow.post_call() for _ in range(14)]
    await flow.drain()
    await flow.poll()
    pos_ids = [(await flow.get(a["id"]))["external"]["id"] for a in registered]
    for pos_id in pos_ids[:5]:
        await flow.advance(pos_id, "coordination")

    cycle = await flow.poll()

    recent = len(registered)  # all registered seconds ago, within the window
    assert cycle.requests <= max_poll_requests(5 + recent, page_size)
    assert cycle.requests > max_poll_requests(5, page_size)  # what the window costs here
    assert cycle.applied == 5
    quiet = await flow.poll()
    assert quiet.requests <= max_poll_requests(recent, page_size) and quiet.applied == 0


async def test_a_registration_whose_answer_was_lost_and_seen_first_by_the_poller_keeps_its_number(
        start_flow: StartFlow, monkeypatch: pytest.MonkeyPatch) -> None:
    # The retry waits a little, so the poller sees the message before it runs.
    monkeypatch.setattr(forwarding, "REGISTER_POLICY", RetryPolicy(
        max_attempts=5, wait=tenacity.wait_fixed(0.3), timeout_s=10.0))
    flow = await start_flow()
    accepted = await flow.post_call()
    flow.pos.sim.settings.lost_response_rate = 1.0
    await flow.drain()  # the create takes effect in ПОС; its answer never arrives
    flow.pos.sim.settings.lost_response_rate = 0.0
    assert (await flow.get(accepted["id"]))["status"] == "accepted"

    await flow.poll()
    await flow.drain_all()

    appeal = await flow.get(accepted["id"])
    message = flow.pos.sim.find_external(accepted["id"])
    assert len(message) == 1
    assert appeal["status"] == "registered"
    assert appeal["external"]["id"] == str(message[0].id)
    assert appeal["external"]["number"] == message[0].number
    assert [h["status"] for h in appeal["history"]] == ["accepted", "registered"]
    assert "call.registered" in [a["action"] for a in await flow.audit(accepted["id"])]
    assert (await flow.sim_stats())["duplicates"] == 0


async def test_an_answer_confirmed_in_pos_between_two_polls_is_recorded_with_channel_and_who(
        start_flow: StartFlow) -> None:
    # ПОС answered and staff confirmed delivery before the poller looked again: the
    # gateway never saw «Ответ готов к передаче», yet the delivery must be recorded.
    flow = await start_flow()
    appeal_id, pos_id = await flow.registered_call()
    await flow.advance(pos_id, "answer_ready")
    await flow.staff_confirm(pos_id, "post", by="Специалист министерства")

    await flow.poll()
    await flow.drain()

    appeal = await flow.get(appeal_id)
    assert appeal["status"] == "delivered"
    assert appeal["answer"]["text"] == flow.pos_message(pos_id).answer["text"]  # type: ignore[index]
    assert [(d["channel"], d["outcome"], d["by"], d["source"]) for d in appeal["deliveries"]] == [
        ("post", "delivered", "Специалист министерства", "pos")]
    recorded = [a for a in await flow.audit(appeal_id) if a["action"] == "delivery.recorded"]
    assert [(a["detail"]["channel"], a["detail"]["by"]) for a in recorded] == [
        ("post", "Специалист министерства")]
    assert _confirmations(await flow.outbox_rows(appeal_id)) == []


async def test_a_message_rejected_in_pos_ends_rejected_with_its_reason(
        start_flow: StartFlow) -> None:
    flow = await start_flow()
    appeal_id, pos_id = await flow.registered_call()
    await flow.advance(pos_id, "rejected")

    await flow.poll()

    appeal = await flow.get(appeal_id)
    assert appeal["status"] == "rejected"
    assert appeal["answer"]["text"] == flow.pos_message(pos_id).answer["text"]  # type: ignore[index]
    assert appeal_id not in {item["id"] for item in await flow.ready()}
    status, body = await flow.deliver(appeal_id, "phone")
    assert status == 409 and body["error"]["code"] == "answer_not_ready"


async def test_an_answer_pos_mailed_itself_is_not_mailed_twice(start_flow: StartFlow) -> None:
    """Issue 12: once ПОС reports «Ответ отправлен заявителю», the gateway's own answer
    letter queued before it must not go out: the citizen gets one letter, not two."""
    flow = await start_flow()
    appeal_id, pos_id = await flow.answered_call(answer_channel="email")
    await flow.advance(pos_id, "answer_sent")
    await flow.poll()  # before the gateway's own letter went out
    assert (await flow.get(appeal_id))["status"] == "answer_sent"

    await flow.drain()

    appeal = await flow.get(appeal_id)
    assert appeal["status"] == "answer_sent"  # still to be confirmed as delivered
    assert appeal["deliveries"] == []
    assert flow.letters() == []  # a ПОС call: the only letter could be the answer
    assert flow.pos_message(pos_id).delivery is None


async def test_an_answer_pos_mailed_itself_can_still_be_confirmed_by_an_operator(
        start_flow: StartFlow) -> None:
    flow = await start_flow()
    appeal_id, pos_id = await flow.answered_call(answer_channel="email")
    await flow.advance(pos_id, "answer_sent")
    await flow.poll()
    await flow.drain()

    status, _ = await flow.deliver(appeal_id, "email")
    await flow.drain()

    assert status == 200
    appeal = await flow.get(appeal_id)
    assert appeal["status"] == "delivered"
    assert [d["channel"] for d in appeal["deliveries"]] == ["email"]
    assert flow.pos_message(pos_id).delivery["channel"] == "email"  # type: ignore[index]
