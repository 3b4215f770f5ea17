"""Дело-Web's side of the wire: paths, entity and field names, value formats, the marker.

Names are Дело-Web's own (upper case, as the OData service spells them), so this file can
be read against CONTRACT.md line by line. What public client code shows and what we
inferred is marked there; the inferred choices are each made in one place here, so a
deployment that finds them different changes one line.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, field_validator

LOGIN_PATH: Final = "Services/ApiSession.asmx/Login"
ODATA_PATH: Final = "CoreHost/OData/"
BATCH_PATH: Final = ODATA_PATH + "$batch"
SESSION_COOKIE: Final = "EosDelo_SessionID"

CITIZEN: Final = "CITIZEN"
DOCGROUP_CL: Final = "DOCGROUP_CL"
RUBRIC_CL: Final = "RUBRIC_CL"
DEPARTMENT: Final = "DEPARTMENT"
DOC_RC: Final = "DOC_RC"
DOC_RUBRIC: Final = "DOC_RUBRIC"
RESOLUTION: Final = "RESOLUTION"
REPLY: Final = "REPLY"

RC_TYPE_CITIZENS: Final = 2  # DOCGROUP_CL.RC_TYPE of «письма граждан» [002: 2.8.6]
CONTROL_ON: Final = 1
CONTROL_OFF: Final = 0

# The gateway's appeal id inside DOC_RC.ANNOTAT. Braces, not square brackets: the lookup
# is a LIKE on a SQL Server column, where `[...]` is a character class.
_MARKER_RE: Final = re.compile(r"\{gw:([A-Za-z0-9\-]{1,64})\}")
_DELO_DATETIME: Final = "%Y-%m-%dT%H:%M:%S"


def appeal_marker(appeal_id: str) -> str:
    return "{gw:" + appeal_id + "}"


def appeal_id_in(annotation: str | None) -> str | None:
    """The gateway appeal id a card's annotation carries, if any."""
    match = _MARKER_RE.search(annotation or "")
    return match.group(1) if match else None


# ---- value formats ----------------------------------------------------------------------


def delo_datetime(value: datetime) -> str:
    """A naive local timestamp as Дело-Web writes it: `2026-11-23T09:15:00`."""
    return value.replace(tzinfo=None, microsecond=0).strftime(_DELO_DATETIME)


def delo_date(value: date) -> str:
    """A calendar date (PLAN_DATE, DOC_DATE) as a midnight timestamp."""
    return value.strftime("%Y-%m-%d") + "T00:00:00"


def parse_delo_datetime(value: str) -> datetime:
    """Дело-Web's naive local timestamp; fractions and an offset, if sent, are tolerated."""
    text = value.strip().replace(" ", "T")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


# ---- criteries values -------------------------------------------------------------------
# Seen in public client code: exact values, `a|b|c` lists, `lo:hi` ranges, `isnotnull`.
# Ours (inferred): `%` wildcards and the `>=` prefix.


def any_of(values: list[str] | tuple[str, ...]) -> str:
    return "|".join(values)


def containing(text: str) -> str:
    return f"%{text}%"


def at_or_after(value: str) -> str:
    return ">=" + value


def criteries(filters: dict[str, str]) -> str:
    return json.dumps(filters, ensure_ascii=False, separators=(",", ":"))


# ---- entities ---------------------------------------------------------------------------


class Row(BaseModel):
    """A row as the OData service returns it; fields we do not use are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Citizen(Row):
    ISN_CITIZEN: int
    CITIZEN_SURNAME: str | None = None
    CITIZEN_ADDR: str | None = None
    CITIZEN_CITY: str | None = None
    ZIPCODE: str | None = None
    PHONE: str | None = None
    E_MAIL: str | None = None


class DocGroup(Row):
    DUE: str
    ISN_NODE: int | None = None
    CLASSIF_NAME: str | None = None
    RC_TYPE: int | None = None


class Rubric(Row):
    DUE: str
    CLASSIF_NAME: str | None = None
    RUBRIC_CODE: str | None = None


class DocRc(Row):
    ISN_DOC: int
    FREE_NUM: str | None = None
    DOC_DATE: str | None = None
    PLAN_DATE: str | None = None
    CONTROL_STATE: int | None = None
    CITO: int | None = None  # inferred name of the urgency flag
    ANNOTAT: str | None = None  # inferred name of the annotation
    DUE_DOCGROUP: str | None = None  # inferred
    ISN_CITIZEN: int | None = None  # inferred link to the applicant


class Resolution(Row):
    ISN_RESOLUTION: int
    ISN_REF_DOC: int
    RESOLUTION_TEXT: str | None = None
    PLAN_DATE: str | None = None
    CONTROL_STATE: int | None = None
    DUE_CONTROLLER: str | None = None
    RESUME: str | None = None  # inferred: the controller's closing note


class Reply(Row):
    """An executor's line of a resolution; no REPLY_DATE means «не исполнено»."""

    ISN_REPLY: int  # inferred key name
    ISN_RESOLUTION: int
    ISN_REF_DOC: int | None = None  # inferred; when absent the card comes via RESOLUTION
    DUE: str | None = None
    REPLY_TEXT: str | None = None
    REPLY_DATE: str | None = None
    PLAN_DATE: str | None = None  # inferred: the executor's own term, moved on extension
    UPD_DATE: str  # kept as sent: the poll cursor hands it back verbatim

    @field_validator("REPLY_DATE", "PLAN_DATE", "UPD_DATE")
    @classmethod
    def _timestamp(cls, value: str | None) -> str | None:
        if value is not None:
            parse_delo_datetime(value)
        return value


class Created(Row):
    """A created row's answer in a changeset: the temporary key and the one the server gave.

    OData answers a create with the entity, so FREE_NUM (the registration number) may come
    along; when it does not, the adapter reads the card back.
    """

    TempISN: int
    FixedISN: int
    FREE_NUM: str | None = None


def odata_error_code(payload: Any) -> str | None:
    """The `odata.error` code of an error body, or None when it is not one.

    Only the code is ever surfaced: the message may echo the applicant's data.
    """
    if not isinstance(payload, dict):
        return None
    error = payload.get("odata.error")
    if not isinstance(error, dict):
        return None
    code = error.get("code")
    return str(code) if code not in (None, "") else "odata.error"


def odata_error_mentions_session(payload: Any) -> bool:
    """Whether an error body says the session is gone (inferred wording: code or message)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("odata.error"), dict):
        return False
    text = json.dumps(payload["odata.error"], ensure_ascii=False).lower()
    return "session" in text or "сесси" in text


def rows_of(payload: Any) -> list[dict[str, Any]]:
    """The rows of a read: OData v3 `{"value": [...]}` or a bare list (compact format)."""
    rows = payload.get("value") if isinstance(payload, dict) else payload
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError("not an OData collection")
    return rows
