"""Each adapter is built from its own settings in one place (adapters/*/factory.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import respx
from pydantic import SecretStr

from adapters.delo import factory as delo_factory
from adapters.delo import wire
from adapters.email import factory as email_factory
from adapters.email.mailer import TlsMode
from adapters.pos import factory as pos_factory
from config.routing import DEFAULT_ROUTING_FILE, RoutingConfigError, delo_executor_dues
from config.settings import DeloSettings, PosSettings, SmtpSettings

DELO = "http://delo.test/"


def test_executor_dues_are_the_delo_rules_executors() -> None:
    dues = delo_executor_dues()
    text = DEFAULT_ROUTING_FILE.read_text(encoding="utf-8")
    assert dues and list(dues) == sorted(set(dues))
    for due in dues:
        assert f'executor = "{due}"' in text


def test_an_unreadable_routing_table_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "routing.toml"
    broken.write_text("[pos\n", encoding="utf-8")
    with pytest.raises(RoutingConfigError):
        delo_executor_dues(broken)


async def test_pos_adapter_takes_its_settings() -> None:
    settings = PosSettings(base_url="http://pos.test", token=SecretStr("t"), overlap_s=5)
    with respx.mock() as mock:
        route = mock.get("http://pos.test/api/v1/messages").respond(
            200, json={"items": [], "next_cursor": None})
        async with pos_factory.build(settings) as client:
            await client.fetch_updates(json.dumps(
                {"v": 1, "since": "2026-11-23T09:00:00+03:00"}), 10)
    request = route.calls.last.request
    assert request.headers["Authorization"] == "Bearer t"
    assert request.url.params["updated_since"] == "2026-11-23T08:59:55+03:00"


def test_pos_adapter_needs_a_url_and_a_token() -> None:
    with pytest.raises(ValueError, match="base_url"):
        pos_factory.build(PosSettings())


async def _first_poll_filters(settings: DeloSettings, now: datetime) -> dict[str, str]:
    with respx.mock() as mock:
        mock.get(DELO + wire.LOGIN_PATH).respond(
            200, headers={"Set-Cookie": f"{wire.SESSION_COOKIE}=s1; path=/"})
        route = mock.get(DELO + wire.ODATA_PATH + wire.REPLY).respond(200, json={"value": []})
        client = delo_factory.build(settings, executor_dues=("0.2A.", "0.2B."),
                                    hotline_zone=lambda _h: UTC, now=now)
        async with client:
            await client.fetch_updates(None, 50)
    filters: dict[str, str] = json.loads(route.calls.last.request.url.params["criteries"])
    return filters


async def test_delo_first_poll_reads_routed_executors_from_now_by_default() -> None:
    settings = DeloSettings(base_url=DELO, username="u", password=SecretStr("p"), overlap_s=30)
    now = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # 09:00 in Moscow, Дело's zone
    filters = await _first_poll_filters(settings, now)
    assert filters == {"UPD_DATE": ">=2026-11-23T08:59:30", "DUE": "0.2A.|0.2B."}


async def test_delo_first_poll_starts_at_the_configured_moment() -> None:
    settings = DeloSettings(base_url=DELO, username="u", password=SecretStr("p"),
                            initial_since=datetime(2026, 11, 1), overlap_s=0,
                            docgroup_due="0.1CP.")
    filters = await _first_poll_filters(settings, datetime(2026, 11, 23, tzinfo=UTC))
    assert filters["UPD_DATE"] == ">=2026-11-01T03:00:00"  # naive: UTC, told in Moscow time


def test_delo_adapter_needs_its_account() -> None:
    with pytest.raises(ValueError, match="username"):
        delo_factory.build(DeloSettings(base_url=DELO), executor_dues=(),
                           hotline_zone=lambda _h: UTC)


async def test_mailer_takes_its_settings() -> None:
    mailer = email_factory.build(SmtpSettings(host="smtp.test", port=2525, security="tls",
                                              password=SecretStr("pw"), timeout_s=7))
    assert mailer._settings.tls is TlsMode.IMPLICIT
    assert (mailer._settings.host, mailer._settings.port) == ("smtp.test", 2525)
    assert mailer._settings.password == "pw" and mailer._settings.command_timeout_s == 7
    await mailer.aclose()
