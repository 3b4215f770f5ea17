"""Poll cost: with many open appeals of which a few changed, count one cycle's requests.

    python -m bench.polling [--open 100000] [--changed-percent 1] [--page-size 500]

Seeds the ПОС simulator (in-process, on loopback) and a fresh SQLite database with the
same open appeals, last changed an hour ago as open appeals in a real installation were,
starts the cursor where a deployment would (now), changes a share of the messages, and
runs one cycle with the default settings (the client re-reads a 60 s overlap window for
late commits). Prints JSON: requests made, the bound ceil(changed / page size) + 1 from
DESIGN §4, and the cycle's duration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from adapters.pos import wire
from adapters.pos.client import PosClient, cursor_since
from adapters.pos.simulator import PosSimulatorSettings, start_simulator
from config.settings import PosSettings
from gateway.clock import SystemClock
from gateway.services.polling import Poller
from gateway.storage.database import create_engine
from gateway.storage.migrate import upgrade
from gateway.storage.tables import appeals, poller_cursors
from gateway.storage.unit_of_work import SqlStorage
from outbox import store_for

SEEDED_AGO_S = 3600.0
OVERLAP_S = PosSettings().overlap_s  # what a user gets by default
ROUTE: dict[str, Any] = {"system": "pos", "executor": "bench", "pos": {"category_id": 101,
         "subcategory_id": 10105, "organization_id": 5001,
         "text_prefix": "Центр мониторинга 112"}, "delo": None, "email": [],
         "deadline_policy": "default"}


def _appeal_row(appeal_id: str, external_id: int, now: datetime) -> dict[str, Any]:
    return {
        "id": appeal_id, "hotline": "122", "journal_id": appeal_id, "idempotency_key": None,
        "content_hash": "0" * 64, "received_at": now, "operator": "bench",
        "applicant": {"last_name": "Иванов", "first_name": "Иван", "middle_name": None,
                      "phone": "+79005550000", "email": None, "postal_address": None},
        "problem_address": None, "topic": "Отопление", "summary": "bench", "repeat": False,
        "urgency": "control", "answer_channel": "phone", "informational": False,
        "status": "registered", "route": ROUTE, "route_system": "pos", "executor": "bench",
        "due_at": None, "feedback_due_at": None, "request_due_at": None, "overdue": False,
        "external_system": "pos", "external_id": str(external_id), "external_number": None,
        "external_stage": "moderation", "answer_text": None, "answer_ready_at": None,
        "callback_attempts": 0, "needs_supervisor": False,
        "created_at": now, "updated_at": now, "version": 1,
    }


async def run(open_appeals: int, changed_percent: float, page_size: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-poll-"))
    url = f"sqlite+aiosqlite:///{work / 'gateway.db'}"
    await asyncio.to_thread(upgrade, url)
    # The open appeals were last changed an hour ago; the changes below happen now.
    behind = [SEEDED_AGO_S]
    sim = await start_simulator(settings=PosSimulatorSettings(stage_seconds=0,
                                                              max_page_size=page_size),
                                clock=lambda: time.time() - behind[0])
    engine = create_engine(url)
    now = datetime.now(UTC)
    rows = []
    for _ in range(open_appeals):
        appeal_id = str(uuid.uuid4())
        message, _ = sim.sim.create(wire.CreateMessage.model_validate({
            "source": "operator", "external_id": appeal_id, "category_id": 101,
            "subcategory_id": 10105, "organization_id": 5001,
            "text": "Центр мониторинга 112. bench", "problem_address": "bench",
            "applicant": {"last_name": "Иванов", "first_name": "Иван"},
            "received_at": now.isoformat()}), appeal_id)
        rows.append(_appeal_row(appeal_id, message.id, now))
    async with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            await conn.execute(insert(appeals), rows[start:start + 5000])

    behind[0] = 0.0
    requests = 0

    async def count(_request: httpx.Request) -> None:
        nonlocal requests
        requests += 1

    client = PosClient(sim.url, PosSimulatorSettings().token, overlap_s=OVERLAP_S)
    client._http.event_hooks["request"].append(count)
    outbox = store_for(engine)
    poller = Poller("pos", client, SqlStorage(engine, outbox, SystemClock()), SystemClock(),
                    zone_of=lambda _h: UTC, interval_s=60,
                    page_size=page_size)
    # A deployment starts following from now, not from the platform's whole history.
    async with engine.begin() as conn:
        await conn.execute(insert(poller_cursors).values(
            system="pos", cursor=cursor_since(datetime.now(UTC)), updated_at=now))
    started = time.perf_counter()
    first = await poller.poll_once()
    first_s = time.perf_counter() - started

    changed = int(open_appeals * changed_percent / 100)
    ids = list(sim.sim.messages)[:changed]
    for ident in ids:
        sim.sim.advance(ident)
    requests = 0
    started = time.perf_counter()
    cycle = await poller.poll_once()
    cycle_s = time.perf_counter() - started
    await client.aclose()
    await sim.close()
    await engine.dispose()
    return {
        "open_appeals": open_appeals,
        "changed": changed,
        "page_size": page_size,
        "overlap_s": OVERLAP_S,
        "first_cycle_requests": first.requests,
        "first_cycle_s": round(first_s, 2),
        "cycle_requests": requests,
        "cycle_updates_seen": cycle.updates,
        "cycle_applied": cycle.applied,
        "bound_ceil_changed_over_page_plus_1": math.ceil(changed / page_size) + 1,
        "cycle_s": round(cycle_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--open", type=int, default=100_000)
    parser.add_argument("--changed-percent", type=float, default=1.0)
    parser.add_argument("--page-size", type=int, default=500)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.open, args.changed_percent, args.page_size)),
                     indent=2))


if __name__ == "__main__":
    main()
