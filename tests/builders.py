"""One builder for the appeals tests need: a complete, valid appeal, changed where a test says.

Defaults: an urgent heating call on the 122 line, taken Monday 2026-11-23 at 09:15 Moscow,
routed to ПОС, answer by phone. Pass any field of `Appeal` to change it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from gateway.domain.appeal import (
    AnswerChannel,
    Appeal,
    AppealStatus,
    Applicant,
    Urgency,
)
from gateway.domain.route import PosTarget, Route, TargetSystem

APPEAL_ID = "7f1c2d9e-0000-4000-8000-000000000001"
RECEIVED_AT = datetime(2026, 11, 23, 6, 15, tzinfo=UTC)  # 09:15 in Moscow, a working Monday

APPLICANT = Applicant(
    last_name="Смирнов", first_name="Олег", middle_name="Петрович", phone="+79001234567",
    email="o.smirnov@example.ru", postal_address="г. Владикавказ, ул. Мира, 5")

POS_ROUTE = Route(system=TargetSystem.POS, executor="Министерство ЖКХ",
                  pos=PosTarget(category_id=101, subcategory_id=1011, organization_id=5001))


def make_appeal(**changes: Any) -> Appeal:
    appeal = Appeal(
        id=APPEAL_ID,
        hotline="122",
        journal_id="KRS-2026-000123",
        received_at=RECEIVED_AT,
        operator="Иванова А.А.",
        applicant=APPLICANT,
        problem_address="г. Владикавказ, ул. Ленина, 1",
        topic="Отопление",
        summary="В квартире нет отопления третий день",
        repeat=False,
        urgency=Urgency.URGENT,
        answer_channel=AnswerChannel.PHONE,
        informational=False,
        status=AppealStatus.ACCEPTED,
        route=POS_ROUTE,
        due_at=datetime(2026, 11, 30, 20, 59, tzinfo=UTC),  # 30.11 23:59 in Moscow
    )
    return replace(appeal, **changes)
