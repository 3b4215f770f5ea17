"""The gateway's settings: a TOML file overridden by `GATEWAY_*` environment variables.

Secrets (tokens, passwords) come only from the environment or a secrets directory, never
from the TOML file, which tends to end up in version control and in support tickets.
A bad setting stops start-up with a message that names it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from config.errors import ConfigError
from gateway.tokens import hash_token

DEFAULT_CONFIG_FILE = Path("gateway.toml")
ROLES = ("operator", "delivery", "supervisor", "admin")

# Dotted paths of settings that may never be read from the TOML file.
SECRET_KEYS = frozenset(
    {"api_tokens", "pos.token", "delo.password", "smtp.password", "imap.password"}
)


class SettingsError(ConfigError):
    """Start-up refused: the message names the setting and what is wrong with it."""


class HttpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # A client that holds a connection without finishing its request is closed: slow or
    # stalled clients must not pile up until the process runs out of file descriptors.
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=30.0, gt=0)
    keepalive_timeout_s: float = Field(default=15.0, gt=0)
    max_connections: int = Field(default=0, ge=0)  # 0: half the open-file limit, at most 1024
    accept_error_log_interval_s: float = Field(default=10.0, gt=0)


class DatabaseSettings(BaseModel):
    """Time bounds on the database, so a held lock is a quick 503 rather than a hang."""

    statement_timeout_s: float = Field(default=30.0, ge=0)  # PostgreSQL; 0: no limit
    lock_timeout_s: float = Field(default=5.0, ge=0)  # PostgreSQL; 0: no limit
    connect_timeout_s: float = Field(default=5.0, gt=0)  # PostgreSQL
    busy_timeout_s: float = Field(default=10.0, gt=0)  # SQLite: wait for the write lock
    ready_timeout_s: float = Field(default=2.0, gt=0)  # /readyz: a write within this bound
    min_free_mb: int = Field(default=64, ge=0)  # SQLite file: /readyz needs this much disk


class MetricsSettings(BaseModel):
    """/metrics: behind the admin token, or open on a listener of its own for the scraper."""

    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=1, le=65535)  # None: no separate listener
    cache_s: float = Field(default=5.0, ge=0)  # outbox row counts are at most this old


class HotlineSettings(BaseModel):
    """A hotline the gateway takes calls from ("122", "телефон доверия главы")."""

    code: str = Field(min_length=1, max_length=32)
    name: str = ""
    timezone: str = "Europe/Moscow"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _check_zone(value)


class PosEasSettings(BaseModel):
    """ПОС's «external appeal system» (shared/contracts/pos-eas.md); the [unknown] items
    are questions for onboarding, listed in docs/pos-eas-questions.md."""

    client_id: SecretStr | None = None  # the integration's id, sent as `username`
    client_secret: SecretStr | None = None  # its secret, sent as `password`
    oauth_client: SecretStr | None = None  # the Basic pair's client [unknown: who issues it]
    oauth_secret: SecretStr | None = None
    scope: str = "any"
    region_id: int | None = None  # ПОС's region id (E1), never assumed
    ogrn: str | None = None  # organizationInfo.ogrn of the addressee [unknown: required?]
    mapping_file: Path | None = None  # event codes → statuses; default config/pos_eas_mapping.toml
    # The global cap on reads of ПОС [unknown: what ПОС tolerates; 24AG read once a day].
    rate_per_hour: float = Field(default=1800.0, gt=0)
    # How often the per-appeal poller walks the open appeals; each is read only when due.
    poll_tick_s: float = Field(default=300.0, gt=0)
    # E-mail authorities (ids of routing.toml's [[email.authority]]) that take ПОС-bound
    # calls without the caller's Госуслуги id: EAS requires epguId (pos-eas.md §4.1).
    # Empty: such calls reach the adapter and fail with that reason for a person to handle.
    no_epgu_email: list[str] = Field(default_factory=list)
    # The synced copy of ПОС's dictionaries (E1/E3/E5), which `gateway routes check` compares
    # the routing table with; the daemon syncs at start and then this often.
    dictionaries_file: Path = Path("var/pos-dictionaries.json")
    dictionaries_every_s: float = Field(default=86_400.0, gt=0)


class PosSettings(BaseModel):
    base_url: str | None = None  # None: `gateway demo` starts the built-in simulator
    token: SecretStr | None = None
    # "gateway": our own contract (pos-api.md); "eas": ПОС's external appeal system.
    dialect: Literal["gateway", "eas"] = "gateway"
    eas: PosEasSettings = Field(default_factory=PosEasSettings)
    poll_interval_s: float = Field(default=30.0, gt=0)
    page_size: int = Field(default=200, ge=1, le=500)
    timeout_s: float = Field(default=10.0, gt=0)
    mapping_file: Path | None = None
    # Each poll cycle re-reads this far back: a change committed late upstream carries an
    # updated_at older than changes already read. Re-reads are idempotent.
    overlap_s: float = Field(default=60.0, ge=0)
    # Every this often, each open appeal's message is read one by one: the backstop for a
    # change committed later than the overlap window (one request per open appeal). 0: off.
    reconcile_interval_s: float = Field(default=86_400.0, ge=0)


class DeloSettings(BaseModel):
    base_url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    poll_interval_s: float = Field(default=60.0, gt=0)
    page_size: int = Field(default=200, ge=1, le=1000)
    timeout_s: float = Field(default=15.0, gt=0)
    # The letters-of-citizens document group to register into, when Дело has several.
    docgroup_due: str | None = None
    # Where the very first poll starts reading REPLY rows; None: when the gateway first
    # starts, so a real installation's first poll does not read Дело's whole history.
    # A date without a zone is taken as UTC.
    initial_since: datetime | None = None
    overlap_s: float = Field(default=60.0, ge=0)  # as for ПОС


class SmtpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8025, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "gateway@localhost"
    security: Literal["none", "starttls", "tls"] = "none"
    timeout_s: float = Field(default=30.0, gt=0)


class ImapSettings(BaseModel):
    """The contact centre's mailbox, where officials' replies arrive [004: 10.2]; no host:
    no reader."""

    host: str | None = None
    port: int = Field(default=993, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    security: Literal["none", "starttls", "tls"] = "tls"
    folder: str = "INBOX"
    poll_interval_s: float = Field(default=60.0, gt=0)
    timeout_s: float = Field(default=30.0, gt=0)
    # Off unless asked: the mailbox is the contact centre's record of what officials wrote.
    delete_processed: bool = False
    max_message_mb: float = Field(default=25.0, gt=0)
    max_attachment_mb: float = Field(default=10.0, gt=0)
    validate_certs: bool = True
    ca_file: Path | None = None


class OutboxSettings(BaseModel):
    # Wide batches make a drain cheap per row; `target_concurrency` keeps what reaches one
    # remote system (ПОС, «Дело», the mail server) at 32 requests at a time.
    batch_size: int = Field(default=250, ge=1, le=5000)
    concurrency: int = Field(default=256, ge=1, le=1024)
    target_concurrency: int = Field(default=32, ge=1, le=1024)
    lease_s: float = Field(default=60.0, gt=1)
    poll_interval_s: float = Field(default=0.5, gt=0)


class Settings(BaseSettings):
    """Everything `gateway run` needs; every field has an environment variable `GATEWAY_...`."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    database_url: str = "sqlite+aiosqlite:///./gateway.db"
    database: DatabaseSettings = DatabaseSettings()
    http: HttpSettings = HttpSettings()
    metrics: MetricsSettings = MetricsSettings()
    api_tokens: SecretStr | None = None  # "role:token,role:token"
    routing_file: Path | None = None
    topics_file: Path | None = None
    deadlines_file: Path | None = None
    calendar_overrides_file: Path | None = None
    reports_file: Path | None = None  # weekly schedules, recipients, working hours, the PBX
    timezone: str = "Europe/Moscow"
    hotlines: list[HotlineSettings] = Field(
        default_factory=lambda: [HotlineSettings(code="122", name="Единая линия 122")]
    )
    pos: PosSettings = PosSettings()
    delo: DeloSettings = DeloSettings()
    smtp: SmtpSettings = SmtpSettings()
    imap: ImapSettings = ImapSettings()
    outbox: OutboxSettings = OutboxSettings()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    instance_name: str = Field(default_factory=lambda: os.uname().nodename)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _check_zone(value)

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
            )
        return value

    @field_validator("api_tokens")
    @classmethod
    def _tokens_well_formed(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_api_tokens(value.get_secret_value())
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs and has the lowest priority.
        return (env_settings, file_secret_settings, init_settings)

    @model_validator(mode="after")
    def _adapters_complete(self) -> Settings:
        if self.pos.base_url and self.pos.dialect == "eas":
            eas = self.pos.eas
            missing = [name for name in ("client_id", "client_secret", "oauth_client",
                                         "oauth_secret", "region_id")
                       if getattr(eas, name) is None]
            if missing:
                names = ", ".join(f"GATEWAY_POS__EAS__{m.upper()}" for m in missing)
                raise ValueError(f"the EAS dialect needs {names}")
        elif self.pos.base_url and self.pos.token is None:
            raise ValueError("pos.token (GATEWAY_POS__TOKEN) is required with pos.base_url")
        if self.delo.base_url and (self.delo.username is None or self.delo.password is None):
            raise ValueError("delo.username and delo.password (GATEWAY_DELO__USERNAME, "
                             "GATEWAY_DELO__PASSWORD) are required with delo.base_url")
        if self.imap.host and (self.imap.username is None or self.imap.password is None):
            raise ValueError("imap.username and imap.password (GATEWAY_IMAP__USERNAME, "
                             "GATEWAY_IMAP__PASSWORD) are required with imap.host")
        if not self.hotlines:
            raise ValueError("hotlines: at least one hotline must be configured")
        return self

    def hotline(self, code: str) -> HotlineSettings | None:
        return next((h for h in self.hotlines if h.code == code), None)

    def zone_of(self, hotline: str) -> ZoneInfo:
        configured = self.hotline(hotline)
        return ZoneInfo(configured.timezone if configured else self.timezone)


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


def parse_api_tokens(raw: str) -> dict[str, str]:
    """`role:token,role:token` -> {sha256(token): role}; the plain tokens are not kept."""
    hashed: dict[str, str] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        role, sep, token = item.partition(":")
        role = role.strip()
        if not sep or not token.strip():
            raise ValueError("each entry must be role:token")
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        hashed_token = hash_token(token.strip())
        earlier = hashed.get(hashed_token)
        if earlier is not None and earlier != role:
            # Whichever role won, a holder of one role would act as the other.
            raise ValueError(f"one token is given to two roles ({earlier} and {role}); "
                             "each role needs a token of its own")
        hashed[hashed_token] = role
    return hashed


def _secret_keys_in(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    found = []
    for key, value in data.items():
        dotted = f"{prefix}{key}".lower()
        if dotted in SECRET_KEYS:
            found.append(dotted)
        elif isinstance(value, Mapping):
            found.extend(_secret_keys_in(value, f"{dotted}."))
    return found


def load_settings(
    config_file: Path | None = None, secrets_dir: Path | None = None
) -> Settings:
    """Settings from the TOML file (if any), the environment and the secrets directory."""
    path = config_file
    if path is None and DEFAULT_CONFIG_FILE.is_file():
        path = DEFAULT_CONFIG_FILE
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise SettingsError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path} is not valid TOML: {exc}") from exc
        secrets = _secret_keys_in(data)
        if _has_password(data.get("database_url")):
            secrets.append("database_url")
        if secrets:
            names = sorted(secrets)
            envs = ", ".join("GATEWAY_" + name.replace(".", "__").upper() for name in names)
            raise SettingsError(
                f"config file {path} holds secrets ({', '.join(names)}); "
                f"give them by environment variable ({envs}) "
                "or in the secrets directory"
            )
    secrets_dir = secrets_dir or _env_path("GATEWAY_SECRETS_DIR")
    try:
        if secrets_dir is not None:
            return Settings(_secrets_dir=secrets_dir, **data)
        return Settings(**data)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, path)) from None


def _has_password(url: Any) -> bool:
    """A database URL with a password in it is a secret like any other."""
    if not isinstance(url, str):
        return False
    try:
        return bool(make_url(url).password)
    except ArgumentError:
        return "@" in url.partition("://")[2]  # unparseable: refuse if it may hold one


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _describe(exc: ValidationError, path: Path | None) -> str:
    lines = []
    for error in exc.errors():
        if not error["loc"]:
            # A rule across settings: its message names them itself.
            where = f" ({path} or the environment)" if path else ""
            lines.append(f"settings{where}: {error['msg']}")
            continue
        dotted = ".".join(str(p) for p in error["loc"])
        env = "GATEWAY_" + "__".join(str(p) for p in error["loc"]).upper()
        where = f"{path} or {env}" if path else env
        lines.append(f"setting {dotted} ({where}): {error['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)
