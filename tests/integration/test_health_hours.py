"""Health questions by the institutions' working hours in config/routing.toml [004: 12]:
within them the request goes to the institution on duty, outside them the contact centre
sends its own e-mail request (to the ministry) as for any other call [004: 10]."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.clock import ManualClock
from tests.conftest import OPERATOR, StartApi, valid_call


@pytest.mark.parametrize(("called_at", "system", "executor"), [
    # Monday 23.11.2026, 19:55 in Moscow: the institutions work until 20:00.
    (datetime(2026, 11, 23, 16, 55, tzinfo=UTC), "health",
     "ГБУЗ «Областной центр медицины катастроф» (дежурное учреждение)"),
    # The same evening at 20:05: the contact centre's own route.
    (datetime(2026, 11, 23, 17, 5, tzinfo=UTC), "email",
     "Министерство здравоохранения Примерной области"),
])
async def test_a_health_call_is_routed_by_the_institutions_hours(
        start_api: StartApi, migrated_sqlite_url: str, called_at: datetime, system: str,
        executor: str) -> None:
    api = await start_api(migrated_sqlite_url, ManualClock(called_at + timedelta(minutes=5)))

    response = await api.client.post("/api/v1/calls", headers=OPERATOR, json=valid_call(
        topic="Здравоохранение", received_at=called_at.isoformat()))

    assert response.status == 201, await response.text()
    route = (await response.json())["route"]
    assert (route["system"], route["executor"]) == (system, executor)
