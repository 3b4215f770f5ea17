"""ПОС's «external appeal system» (EAS) JSON as pydantic models: the one place its names live.

The shapes follow `../shared/contracts/pos-eas.md` (reconstructed from public integrators'
code, not from a ПОС specification). The adapter builds requests and reads answers with
these models, the EAS simulator validates what it is sent with them. Incoming models
ignore unknown fields and tolerate nulls — the remote is known only from fixtures —
outgoing ones forbid extras.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

TOKEN_PATH = "/user-service/oauth/token"  # noqa: S105 - a path, not a secret
CREATE_PATH = "/inbox-service/external-appeal-system/appeals"
READ_PATH = "/appeal-service/external-appeal-system/appeals/{pos_id}"  # pos-eas.md E8
UPLOAD_PATH = "/inbox-service/filestorage"  # E6: attachments, two steps (§4.3)
REGIONS_PATH = "/inbox-service/regions/all"  # E1: a JSON array
SUBJECTS_PATH = "/inbox-service/subjects/region/{region_id}"  # E3: a page, `?size=N`
SUBSUBJECTS_PATH = "/inbox-service/subsubjects/search"  # E5: a page, `?regionId=R&size=N`
DICTIONARY_PAGE = 10_000  # what C4 asks for; other paging parameters are [unknown]


class _Outgoing(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Incoming(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class TokenReply(_Incoming):
    """`POST /user-service/oauth/token` (pos-eas.md §1.2); only the token is used."""

    access_token: str = Field(min_length=1)
    expires_in: int | None = None


class EasApplicant(_Outgoing):
    """E7 `applicant`: epguId is required by every client model seen (§4.1)."""

    epguId: int
    name: str = Field(min_length=1)
    surname: str | None = None
    patronymic: str | None = None
    email: str | None = None
    phone: str | None = None


class OrganizationRef(_Outgoing):
    ogrn: str


class CreateAppeal(_Outgoing):
    """Body of E7 `POST /inbox-service/external-appeal-system/appeals`."""

    regionId: int
    description: str = Field(min_length=1)
    createdAt: str
    applicant: EasApplicant
    subjectId: int
    subsubjectId: int
    location: str | None = None
    attachmentIds: list[str] | None = None
    organizationInfo: OrganizationRef | None = None


class HistoryAnswer(_Incoming):
    answerType: str | None = None
    comment: str | None = None
    rejectReason: dict[str, object] | None = None


class HistoryEntry(_Incoming):
    """One event of an appeal's history (§5.2); stored idempotently by (status, createdAt)."""

    status: str
    statusText: str | None = None
    answer: HistoryAnswer | None = None
    createdAt: datetime


class OrganizationInfo(_Incoming):
    opaId: int | None = None
    name: str | None = None
    ogrn: str | None = None


class EasAppeal(_Incoming):
    """The appeal object of the E7 and E8 replies (§2.1)."""

    posId: int
    status: str
    statusText: str | None = None
    opaId: int | None = None
    organizationInfo: OrganizationInfo | None = None
    history: list[HistoryEntry] | None = None
    answerAt: datetime | None = None
    createdAt: datetime | None = None


class Region(_Incoming):
    """E1 item; `okato` and `coordinates` are not used."""

    id: int
    name: str


class Subject(_Incoming):
    """E3 item: a category of the region; `deleted` marks a retired one."""

    id: int
    name: str
    deleted: bool = False


class SubjectRef(_Incoming):
    id: int


class Subsubject(_Incoming):
    """E5 item: a subcategory, with the category it belongs to."""

    id: int
    name: str
    deleted: bool = False
    subject: SubjectRef | None = None


class SubjectPage(_Incoming):
    content: list[Subject]


class SubsubjectPage(_Incoming):
    content: list[Subsubject]


class UploadReply(_Incoming):
    """E6: the ПОС file id is a UUID string."""

    id: str
