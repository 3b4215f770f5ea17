"""The ПОС adapter as the gateway's settings describe it: the one place it is built."""

from __future__ import annotations

from adapters.pos.client import PosClient
from adapters.pos.mapping import load_mapping
from config.settings import PosSettings


def build(settings: PosSettings) -> PosClient:
    if not settings.base_url or settings.token is None:
        raise ValueError("pos.base_url and pos.token are needed to build the ПОС adapter")
    return PosClient(
        settings.base_url, settings.token.get_secret_value(),
        mapping=load_mapping(settings.mapping_file), timeout=settings.timeout_s,
        overlap_s=settings.overlap_s,
    )
