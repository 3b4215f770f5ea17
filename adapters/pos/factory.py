"""The ПОС adapter as the gateway's settings describe it: the one place it is built."""

from __future__ import annotations

from adapters.pos.client import PosClient
from adapters.pos.eas_client import EasClient
from adapters.pos.eas_mapping import load_eas_mapping
from adapters.pos.mapping import load_mapping
from config.settings import PosSettings


def build_eas(settings: PosSettings) -> EasClient:
    """The EAS dialect; every credential from the environment or the secrets directory."""
    eas = settings.eas
    secrets = (eas.client_id, eas.client_secret, eas.oauth_client, eas.oauth_secret)
    if not settings.base_url or any(s is None for s in secrets) or eas.region_id is None:
        raise ValueError("pos.base_url, pos.eas.client_id, client_secret, oauth_client, "
                         "oauth_secret and region_id are needed for the EAS dialect")
    client_id, client_secret, oauth_client, oauth_secret = (
        s.get_secret_value() for s in secrets if s is not None)
    return EasClient(
        settings.base_url, client_id=client_id, client_secret=client_secret,
        oauth_client=oauth_client, oauth_secret=oauth_secret, region_id=eas.region_id,
        ogrn=eas.ogrn, scope=eas.scope, mapping=load_eas_mapping(eas.mapping_file),
        timeout=settings.timeout_s, rate_per_hour=eas.rate_per_hour,
    )


def build(settings: PosSettings) -> PosClient:
    if not settings.base_url or settings.token is None:
        raise ValueError("pos.base_url and pos.token are needed to build the ПОС adapter")
    return PosClient(
        settings.base_url, settings.token.get_secret_value(),
        mapping=load_mapping(settings.mapping_file), timeout=settings.timeout_s,
        overlap_s=settings.overlap_s,
    )
