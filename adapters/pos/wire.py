"""The ПОС JSON as pydantic models: the one place the remote's field names live.

Both sides use these models — the adapter to build requests and read answers, the
simulator to validate what it is sent — so the contract in
`../shared/contracts/pos-api.md` is spelt out once. Incoming models ignore unknown fields
(the remote may grow), outgoing ones forbid them (we send exactly the contract).
Stage values stay plain strings here: which stages exist and what they mean is
configuration (`config/pos_mapping.toml`), not code.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SOURCE_OPERATOR = "operator"

# Stage codes of the contract, in order; the mapping to our statuses is configuration.
STAGES_IN_ORDER: tuple[str, ...] = (
    "moderation",
    "coordination",
    "execution",
    "approval",
    "confirmation",
    "answer_ready",  # «Ответ готов к передаче»
    "answer_delivered",  # «Ответ передан заявителю»
)
ANSWER_READY = "answer_ready"
ANSWER_DELIVERED = "answer_delivered"
ANSWER_SENT = "answer_sent"  # «Ответ отправлен заявителю»: ПОС e-mailed it itself
REJECTED = "rejected"

ERROR_CATEGORY_NOT_ALLOWED = "category_not_allowed"
ERROR_ORGANIZATION_NOT_CONNECTED = "organization_not_connected"
ERROR_VALIDATION = "validation"
ERROR_ANSWER_NOT_READY = "answer_not_ready"

WireChannel = Literal["phone", "email", "post", "hand"]


class _Outgoing(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Incoming(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class WireApplicant(_Outgoing):
    """The applicant's own contacts; `address` is theirs, never the problem's [003]."""

    last_name: str = Field(min_length=1)
    first_name: str = Field(min_length=1)
    middle_name: str | None = None
    phone: str | None = None
    email: str | None = None
    address: str | None = None


class CreateMessage(_Outgoing):
    """Body of `POST /api/v1/messages`."""

    source: str = Field(min_length=1)
    external_id: str = Field(min_length=1, max_length=128)
    category_id: int
    subcategory_id: int
    organization_id: int
    text: str = Field(min_length=1)
    problem_address: str | None = None
    applicant: WireApplicant
    received_at: AwareDatetime


class ConfirmDelivery(_Outgoing):
    """Body of `POST /api/v1/messages/{id}/delivery`."""

    channel: WireChannel
    confirmed_at: AwareDatetime
    comment: str | None = None


class WireAnswer(_Incoming):
    text: str
    approved_at: datetime | None = None
    organization: str | None = None


class WireDelivery(_Incoming):
    # A plain string: an unknown channel from the remote must not make a whole page unreadable.
    channel: str
    confirmed_at: datetime
    confirmed_by: str | None = None


class Message(_Incoming):
    """A message as the remote returns it; the create answer carries only the first fields."""

    id: int | str
    number: str | None = None
    external_id: str | None = None
    stage: str
    status: str | None = None
    organization_id: int | None = None
    updated_at: datetime
    planned_completion: date | None = None
    answer: WireAnswer | None = None
    delivery: WireDelivery | None = None


class MessagesPage(_Incoming):
    """`GET /api/v1/messages`; items are validated one by one by the reader."""

    items: list[object]
    next_cursor: str | None = None


class ErrorDetail(_Incoming):
    code: str
    message: str | None = None


class ErrorBody(_Incoming):
    error: ErrorDetail
