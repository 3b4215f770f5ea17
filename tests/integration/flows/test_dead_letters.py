"""What admins see when ПОС refuses for good, and how they re-drive it."""

from __future__ import annotations

from typing import Any

from tests.integration.flows.conftest import (
    ADMIN,
    DELIVERY,
    OPERATOR,
    PERSONAL,
    POS_TOKEN,
    SUMMARY,
    Flow,
    StartFlow,
)


async def _dead(flow: Flow) -> list[dict[str, Any]]:
    response = await flow.client.get("/api/v1/outbox", params={"state": "dead"}, headers=ADMIN)
    assert response.status == 200, await response.text()
    items: list[dict[str, Any]] = (await response.json())["items"]
    return items


async def test_a_registration_refused_for_good_is_a_dead_letter_an_admin_can_redrive(
        start_flow: StartFlow) -> None:
    flow = await start_flow()
    flow.pos.sim.settings.token = "rotated-in-pos"  # the gateway's token no longer works
    accepted = await flow.post_call()

    await flow.drain()

    dead = await _dead(flow)
    assert [(d["appeal_id"], d["target"], d["action"]) for d in dead] == [
        (accepted["id"], "pos", "register")]
    assert "401" in dead[0]["last_error"] and "token" in dead[0]["last_error"]
    status = await flow.status()
    assert status["outbox"]["dead"] == 1
    assert status["outbox"]["by_target"]["pos"]["dead"] == 1
    shown = str(dead) + str(status)
    for secret in (*PERSONAL, SUMMARY):
        assert secret not in shown
    assert (await flow.sim_stats())["messages"] == 0
    # Issue 12: the dead letter fails its appeal, with the reason, where people look.
    failed = await flow.get(accepted["id"])
    assert failed["status"] == "failed"
    assert "401" in (failed["history"][-1]["note"] or "")
    listed = await flow.client.get("/api/v1/calls", params={"status": "failed"}, headers=OPERATOR)
    assert [c["id"] for c in (await listed.json())["items"]] == [accepted["id"]]
    assert status["appeals"]["by_status"] == {"failed": 1}

    retry = f"/api/v1/outbox/{dead[0]['id']}/retry"
    assert (await flow.client.post(retry, headers=OPERATOR)).status == 403
    assert (await flow.client.post(retry, headers=DELIVERY)).status == 403
    flow.pos.sim.settings.token = POS_TOKEN  # the admin fixed the configuration
    response = await flow.client.post(retry, headers=ADMIN)
    assert response.status == 200, await response.text()
    assert (await response.json())["state"] == "pending"
    again = await flow.client.post(retry, headers=ADMIN)
    assert again.status == 409  # only dead rows can be re-driven

    await flow.drain()

    appeal = await flow.get(accepted["id"])
    assert appeal["status"] == "registered"
    assert [h["status"] for h in appeal["history"]] == [
        "accepted", "failed", "accepted", "registered"]
    assert (await flow.sim_stats())["creates_by_key"] == {accepted["id"]: 1}
    assert await _dead(flow) == []
    actions = [a["action"] for a in await flow.audit(accepted["id"])]
    assert "outbox.redriven" in actions and "call.registered" in actions
    assert "forwarding.failed" in actions and "forwarding.redriven" in actions


async def test_a_confirmation_crossing_a_different_one_made_in_pos_is_left_for_an_admin(
        start_flow: StartFlow) -> None:
    flow = await start_flow()
    appeal_id, pos_id = await flow.answered_call()
    status, _ = await flow.deliver(appeal_id, "phone")
    assert status == 200
    await flow.staff_confirm(pos_id, "post")  # before our confirmation left

    await flow.drain()
    await flow.poll()

    dead = await _dead(flow)
    assert [(d["appeal_id"], d["action"]) for d in dead] == [(appeal_id, "confirm_delivery")]
    assert "already_delivered" in dead[0]["last_error"]
    appeal = await flow.get(appeal_id)
    assert appeal["status"] == "delivered"
    assert [d["channel"] for d in appeal["deliveries"]] == ["phone"]  # the first one stands
    assert flow.pos_message(pos_id).delivery["channel"] == "post"  # type: ignore[index]
