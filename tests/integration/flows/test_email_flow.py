"""E-mail: requests to the competent authorities, answers to applicants who chose e-mail."""

from __future__ import annotations

import re

import pytest

from adapters.email.letters import appeal_reference
from adapters.email.sink import DropPoint
from tests.integration.flows.conftest import ANIMALS, APPLICANT, StartFlow

VET = ("hotline@vet.example.ru",)
CITY_ADMIN = ("priemnaya@primersk.example.ru", "dezhurny@primersk.example.ru")


def _recipients(header: str | None) -> set[str]:
    return {a.strip().lower() for a in re.split(r"[,\s]+", header or "") if "@" in a}


async def test_a_call_routed_to_email_writes_once_to_every_authority(
        start_flow: StartFlow) -> None:
    flow = await start_flow()
    accepted = await flow.post_call(topic=ANIMALS, summary="Стая собак у школы № 5 по утрам")
    assert accepted["route"]["system"] == "email"

    await flow.drain()

    letters = flow.letters()
    assert len(letters) == 2
    reference = appeal_reference(accepted["id"])
    for letter in letters:
        assert f"[{reference}]" in str(letter["Subject"])
    delivered_to = {frozenset(_recipients(letter["X-Sink-Rcpt-To"])) for letter in letters}
    assert delivered_to == {frozenset(VET), frozenset(CITY_ADMIN)}
    ids = {str(letter["Message-ID"]) for letter in letters}
    assert len(ids) == 2
    appeal = await flow.get(accepted["id"])
    assert appeal["status"] == "registered"
    assert appeal["deadlines"]["request_due_at"] is not None
    sent = [a for a in await flow.audit(accepted["id"]) if a["action"] == "email.request_sent"]
    assert len(sent) == 2
    # Nothing goes to ПОС for it.
    assert (await flow.sim_stats())["messages"] == 0

    await flow.drain()  # nothing left to do: no second round of letters
    assert len(flow.letters()) == 2


async def test_an_answer_for_an_applicant_who_chose_email_is_mailed_and_confirmed_to_pos(
        start_flow: StartFlow) -> None:
    flow = await start_flow()
    appeal_id, pos_id = await flow.registered_call(answer_channel="email")
    await flow.advance(pos_id, "answer_ready")
    await flow.poll()

    await flow.drain()

    letters = flow.letters()
    assert len(letters) == 1
    letter = letters[0]
    assert _recipients(letter["X-Sink-Rcpt-To"]) == {APPLICANT["email"]}
    assert f"[{appeal_reference(appeal_id)}]" in str(letter["Subject"])
    answer_text = flow.pos_message(pos_id).answer["text"]  # type: ignore[index]
    plain = letter.get_body(preferencelist=("plain",))
    assert plain is not None and answer_text in plain.get_content()
    assert letter.get_body(preferencelist=("html",)) is not None

    appeal = await flow.get(appeal_id)
    assert appeal["status"] == "delivered"
    assert [(d["channel"], d["outcome"], d["source"]) for d in appeal["deliveries"]] == [
        ("email", "delivered", "email")]
    message = flow.pos_message(pos_id)
    assert message.stage == "answer_delivered"
    assert message.delivery is not None and message.delivery["channel"] == "email"
    assert appeal_id not in {item["id"] for item in await flow.ready()}

    # ПОС reports our confirmation back: nothing more happens.
    await flow.poll()
    await flow.drain()
    assert len(flow.letters()) == 1
    assert len(await flow.deliveries(appeal_id)) == 1
    assert (await flow.sim_stats())["requests"]["POST /api/v1/messages/{id}/delivery"] == 1


@pytest.mark.parametrize("drop", [DropPoint.BEFORE_ACCEPT, DropPoint.AFTER_ACCEPT])
async def test_a_send_retried_after_the_sink_dropped_the_connection_arrives_once(
        start_flow: StartFlow, fast_retries: None, drop: DropPoint) -> None:
    flow = await start_flow()
    appeal_id, pos_id = await flow.registered_call(answer_channel="email")
    await flow.advance(pos_id, "answer_ready")
    await flow.poll()
    flow.sink.handler.drop_once = drop

    await flow.drain_all()

    assert flow.sink.handler.dropped == 1
    assert len(flow.letters()) == 1
    assert flow.sink.handler.duplicates == (1 if drop is DropPoint.AFTER_ACCEPT else 0)
    answer_rows = [r for r in await flow.outbox_rows(appeal_id)
                   if (r["target"], r["action"]) == ("email", "answer")]
    assert len(answer_rows) == 1
    assert answer_rows[0]["state"] == "done" and answer_rows[0]["attempts"] == 2
    assert (await flow.get(appeal_id))["status"] == "delivered"
    assert flow.pos_message(pos_id).delivery["channel"] == "email"  # type: ignore[index]


async def test_a_dead_answer_letter_is_cancelled_by_a_delivery_by_phone_and_blocks_nothing(
        start_flow: StartFlow) -> None:
    """Issue 12: the answer letter died (the applicant's server refuses the mailbox); the
    operator then reached the citizen by phone. The dead letter is moot: it is cancelled,
    and the ПОС confirmation queued behind it for the same appeal goes out."""
    flow = await start_flow()
    flow.sink.handler.refuse_recipients = {APPLICANT["email"].lower()}
    appeal_id, pos_id = await flow.registered_call(answer_channel="email")
    await flow.advance(pos_id, "answer_ready")
    await flow.poll()
    await flow.drain()
    [dead] = [r for r in await flow.outbox_rows(appeal_id) if r["state"] == "dead"]
    assert (dead["target"], dead["action"]) == ("email", "answer")

    status, _ = await flow.deliver(appeal_id, "phone")
    await flow.drain()

    assert status == 200
    rows = {(r["target"], r["action"]): r for r in await flow.outbox_rows(appeal_id)}
    assert rows[("email", "answer")]["state"] == "cancelled"
    assert rows[("pos", "confirm_delivery")]["state"] == "done"
    message = flow.pos_message(pos_id)
    assert message.delivery is not None and message.delivery["channel"] == "phone"
    assert (await flow.status())["outbox"]["dead"] == 0
    assert flow.letters() == []
