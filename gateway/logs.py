"""JSON logs, one line an event, with personal data masked wherever it appears (152-ФЗ).

Masking is a structlog processor at the end of the chain, so nothing a developer adds
later to an event (a body, an exception message, a third-party log line) bypasses it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

MASK = "***"

# Keys whose values are personal data whatever they hold.
PERSONAL_KEYS = frozenset(
    {
        "applicant", "last_name", "first_name", "middle_name", "full_name", "name", "fio",
        "phone", "email", "e_mail", "postal_address", "address", "problem_address",
        "summary", "text", "answer", "answer_text", "by", "confirmed_by", "operator",
        "to", "recipients", "body", "citizen_surname", "password", "token",
        "authorization", "api_tokens",
    }
)

# An address part: a keyword (г., ул., д., кв., ...) and what follows it up to a comma.
_ADDRESS_PART = (
    r"\b(?:г|гор|город|ул|улица|пр|пр-т|просп|проспект|пер|переулок|наб|набережная|ш|шоссе"
    r"|б-р|бульвар|пл|площадь|мкр|микрорайон|обл|р-н|пос|пгт|с|дер|д|дом|кв|квартира|корп"
    r"|корпус|стр|строение)\.?\s*[А-ЯЁA-Z0-9][^,;\n]*"
)

_PATTERNS = [
    # e-mail addresses
    re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE),
    # phone numbers: +7 / 8 followed by 10 digits with separators, or bare 10+ digit runs;
    # not digits inside a longer token (uuids, "ПОС-2026-123456", "KRS-2026-000123").
    re.compile(r"(?<![\w-])(?:\+?\d[\s\-()]*){10,15}(?<=\d)(?![\w-])"),
    # Russian full names: Фамилия Имя Отчество, and Фамилия И.О.
    re.compile(r"\b[А-ЯЁ][а-яё]+(?:-[А-ЯЁ][а-яё]+)?\s+[А-ЯЁ][а-яё]+\s+[А-ЯЁ][а-яё]+(?:вич|вна|ична|ич|кызы|оглы)\b"),
    re.compile(r"\b[А-ЯЁ][а-яё]+(?:-[А-ЯЁ][а-яё]+)?\s+[А-ЯЁ]\.\s?[А-ЯЁ]\.?"),
    # street addresses: "432017, г. Ульяновск, ул. Гончарова, 1", "пр-т Ленина д. 5 кв. 7":
    # a postcode, keyword parts, and the bare house numbers between them.
    re.compile(
        rf"(?:\b\d{{6}},\s*)?{_ADDRESS_PART}(?:,\s*(?:{_ADDRESS_PART}|\d[^,;\n]*))*"
    ),
]


def mask_text(value: str) -> str:
    for pattern in _PATTERNS:
        value = pattern.sub(MASK, value)
    return value


def _mask(value: Any, key: str | None = None) -> Any:
    if key is not None and key.lower() in PERSONAL_KEYS and value not in (None, "", {}, []):
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask(v) for v in value]
    return value


def mask_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: masks by key name and by pattern, recursively."""
    for key in list(event_dict):
        event_dict[key] = _mask(event_dict[key], key if key != "event" else None)
    return event_dict


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """structlog and the standard library both end in one masked JSON line an event."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[
            # Drop events below the level before any work is spent on them.
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            mask_personal_data,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would print query strings; our middleware logs requests instead.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Alembic announces every plugin it loads; the migrations it runs are still logged.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # Database drivers log statements with their parameters and result rows at debug/info:
    # that is the applicant's personal data, which the masker cannot always recognise.
    for name in ("aiosqlite", "sqlalchemy", "asyncpg"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Request lines carry query strings (a «Дело» lookup names a citizen's phone) and the
    # SMTP conversation names addresses: our adapters log what matters, without those.
    for chatty in ("httpx", "httpcore", "mail.log"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
