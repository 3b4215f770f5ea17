"""The JSON shapes of the gateway's own API (contracts/gateway-api.md), checked by pydantic.

Unknown fields are refused: a misspelt field would otherwise be silently dropped, and
an operator's data would be lost without anyone noticing.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from gateway.domain.appeal import (
    AnswerChannel,
    AppealStatus,
    Applicant,
    DeliveryChannel,
    Urgency,
)

Short = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]
Long = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]
Required128 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Required200 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        # PostgreSQL cannot store U+0000 in text; no person types it either.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL (U+0000) characters")
        return value


class ApplicantIn(_Strict):
    last_name: Name = ""
    first_name: Name = ""
    middle_name: Name | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)] | None = None
    email: EmailStr | None = None
    postal_address: Long | None = None

    def to_domain(self) -> Applicant:
        return Applicant(
            last_name=self.last_name,
            first_name=self.first_name,
            middle_name=self.middle_name or None,
            phone=self.phone or None,
            email=str(self.email) if self.email else None,
            postal_address=self.postal_address or None,
        )


class CallIn(_Strict):
    """POST /api/v1/calls."""

    journal_id: Required128
    hotline: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    received_at: AwareDatetime
    operator: Required200
    applicant: ApplicantIn
    problem_address: Long | None = None
    topic: Required200
    summary: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
    repeat: bool = False
    urgency: Urgency = Urgency.CONTROL
    # A hotline call: unless the operator says otherwise, the answer comes back by phone.
    answer_channel: AnswerChannel | None = None
    informational: bool = False

    def effective_answer_channel(self) -> AnswerChannel | None:
        if self.answer_channel is not None or self.informational:
            return self.answer_channel
        return AnswerChannel.PHONE

    def content_hash(self) -> str:
        """The same call typed twice hashes alike whatever the key order or spacing."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class AttemptIn(_Strict):
    channel: Literal["phone"] = "phone"
    outcome: Literal["no_answer", "busy", "unreachable"]
    at: AwareDatetime | None = None


class DeliveryIn(_Strict):
    channel: DeliveryChannel
    delivered_at: AwareDatetime | None = None
    by: Required200 | None = None


class ListQuery(_Strict):
    status: AppealStatus | None = None
    updated_since: AwareDatetime | None = None
    overdue: bool | None = None
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = None

    @field_validator("updated_since")
    @classmethod
    def _representable_in_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range") from None


def field_errors(exc: ValidationError) -> dict[str, str]:
    """pydantic's errors as {"applicant.phone": "message"}, without echoing the input."""
    fields: dict[str, str] = {}
    for error in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in error["loc"]) or "body"
        fields.setdefault(loc, error["msg"])
    return fields


def iso(value: datetime | None, zone: tzinfo | None = None) -> str | None:
    """ISO 8601 with offset; in the hotline's zone when given, as its operators read time."""
    if value is None:
        return None
    return (value.astimezone(zone) if zone is not None else value).isoformat()


class OutboxQuery(_Strict):
    state: Literal["pending", "leased", "done", "dead"] | None = None
    target: Annotated[str, StringConstraints(max_length=32)] | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    after_id: int | None = Field(default=None, ge=0)


class DeliveriesQuery(_Strict):
    state: Literal["ready"] = "ready"
    limit: int = Field(default=100, ge=1, le=500)
