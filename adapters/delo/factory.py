"""The «Дело» adapter as the gateway's settings describe it: the one place it is built."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo

from adapters.delo.client import DeloClient
from config.settings import DeloSettings


def build(
    settings: DeloSettings, *, executor_dues: Sequence[str],
    hotline_zone: Callable[[str], tzinfo], now: datetime | None = None,
) -> DeloClient:
    """`executor_dues`: the routing table's «Дело» executors (config.routing).

    Without `initial_since` the first poll starts now: a real Дело holds years of REPLY
    rows, none of them the gateway's.
    """
    if not settings.base_url or settings.username is None or settings.password is None:
        raise ValueError("delo.base_url, username and password are needed to build the "
                         "«Дело» adapter")
    since = settings.initial_since or now or datetime.now(UTC)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return DeloClient(
        settings.base_url, settings.username, settings.password.get_secret_value(),
        timeout_s=settings.timeout_s, docgroup_due=settings.docgroup_due,
        executor_dues=executor_dues, hotline_zone=hotline_zone, initial_since=since,
        overlap_s=settings.overlap_s,
    )
