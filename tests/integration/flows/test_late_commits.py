"""Issue 12: a change committed late upstream (stamped before changes already read) is seen.

The simulators' late-commit fault makes a change visible with an `updated_at` / UPD_DATE
older than what the poller already read; the pollers re-read an overlap window each cycle.
Each test also shows the fault bites: without the overlap the change is never fetched.
"""

from __future__ import annotations

import pytest

from adapters.delo.simulator import DeloSimulatorSettings
from tests.integration.flows.conftest import Flow, StartFlow

LAND = "Земля и имущество"  # → a card in «Дело» for every hotline


async def _late_pos_change(flow: Flow) -> tuple[str, str]:
    """Two registered calls; A changes and is read; then B changes, committed late."""
    a_id, a_pos = await flow.registered_call()
    b_id, b_pos = await flow.registered_call()
    await flow.advance(a_pos, "coordination")
    await flow.poll()
    assert (await flow.get(a_id))["status"] == "in_progress"

    flow.pos.sim.settings.late_commit_rate = 1.0
    flow.pos.sim.settings.late_commit_s = 20
    await flow.advance(b_pos, "coordination")
    assert flow.pos_message(b_pos).updated_at < flow.pos_message(a_pos).updated_at
    return a_id, b_id


async def test_pos_change_committed_late_is_seen_by_the_next_cycle(
        start_flow: StartFlow) -> None:
    flow = await start_flow()
    _, late = await _late_pos_change(flow)

    cycle = await flow.poll()

    assert (await flow.get(late))["status"] == "in_progress"
    assert cycle.applied == 1  # A is read again too, and changes nothing
    assert (await flow.sim_stats())["faults"]["late_commit"] == 1


async def test_without_the_overlap_a_late_pos_change_is_missed(start_flow: StartFlow) -> None:
    flow = await start_flow(overlap_s=0)
    _, late = await _late_pos_change(flow)

    await flow.poll()

    assert (await flow.get(late))["status"] == "registered"


async def _late_delo_answer(flow: Flow) -> tuple[str, str]:
    """Two cards; A's executor answers and is read; then B's, committed late."""
    assert flow.delo is not None
    a_id = (await flow.post_call(topic=LAND))["id"]
    b_id = (await flow.post_call(topic=LAND))["id"]
    await flow.drain()
    for appeal_id in (a_id, b_id):
        assert (await flow.get(appeal_id))["status"] == "registered"
    await flow.poll("delo")

    flow.delo.state.force_reply(int((await flow.get(a_id))["external"]["id"]), None)
    await flow.poll("delo")
    assert (await flow.get(a_id))["status"] == "answer_ready"

    flow.delo.state.settings.late_commit_rate = 1.0
    flow.delo.state.settings.late_commit_s = 20
    b_card = int((await flow.get(b_id))["external"]["id"])
    flow.delo.state.force_reply(b_card, None)
    [a_reply] = flow.delo.state.replies_of(int((await flow.get(a_id))["external"]["id"]))
    [b_reply] = flow.delo.state.replies_of(b_card)
    assert b_reply["UPD_DATE"] < a_reply["UPD_DATE"]
    return a_id, b_id


@pytest.mark.parametrize(("overlap_s", "seen"), [(60.0, True), (0.0, False)])
async def test_delo_answer_committed_late_is_seen_only_with_the_overlap(
        start_flow: StartFlow, overlap_s: float, seen: bool) -> None:
    flow = await start_flow(overlap_s=overlap_s, delo=DeloSimulatorSettings())
    _, late = await _late_delo_answer(flow)

    await flow.poll("delo")

    expected = "answer_ready" if seen else "in_progress"  # read once before it answered
    assert (await flow.get(late))["status"] == expected
    assert flow.delo is not None and flow.delo.state.counters["late_commits"] == 1


async def test_a_change_later_than_the_overlap_is_caught_by_the_reconciliation(
        start_flow: StartFlow) -> None:
    """Issue 12: the periodic full reconciliation of open appeals is the backstop for a
    change committed upstream later than the overlap window."""
    flow = await start_flow(overlap_s=0)
    _, late = await _late_pos_change(flow)
    await flow.poll()
    assert (await flow.get(late))["status"] == "registered"  # the cursor missed it

    result = await flow.gw.pollers["pos"].reconcile()

    assert (await flow.get(late))["status"] == "in_progress"
    assert result.checked == 2 and result.applied == 1
    again = await flow.gw.pollers["pos"].reconcile()
    assert again.applied == 0  # applying twice changes nothing
