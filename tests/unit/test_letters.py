"""Letters: what a responsible person and an applicant read, built from the templates."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.email.letters import (
    LetterTemplates,
    TemplateError,
    answer_letter,
    appeal_reference,
    default_templates_dir,
    find_reference,
    request_letters,
)
from gateway.domain.appeal import (
    AnswerChannel,
    Appeal,
    Applicant,
)
from gateway.domain.route import EmailTarget, Route, TargetSystem
from tests import builders

APPEAL_ID = "3f2a9c1e-4b7d-4e2a-9c1e-0123456789ab"
DUE_AT = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)  # 16:00 in Moscow

HOUSING = EmailTarget("Министерство ЖКХ", ("zhkh@gov.test",))
ROADS = EmailTarget("Министерство транспорта", ("roads@gov.test", "roads-duty@gov.test"))


APPLICANT = Applicant(last_name="Петров", first_name="Иван", middle_name="Сергеевич",
                      phone="+79001234567", email="petrov@mail.test")
ROUTE = Route(system=TargetSystem.EMAIL, executor="ЖКХ", email=(HOUSING, ROADS))


def make_appeal(**changes: Any) -> Appeal:
    """A call answered by e-mail, its request due at DUE_AT."""
    mine = dict(id=APPEAL_ID, applicant=APPLICANT, problem_address="г. Ульяновск, ул. Гончарова, 1",
                answer_channel=AnswerChannel.EMAIL, route=ROUTE, due_at=DUE_AT)
    return builders.make_appeal(**(mine | changes))


def test_request_goes_to_every_competent_authority_as_its_own_letter() -> None:
    mails = request_letters(make_appeal(), (HOUSING, ROADS), DUE_AT)

    assert [m.to for m in mails] == [HOUSING.recipients, ROADS.recipients]
    assert [m.idempotency_key for m in mails] == [
        f"{APPEAL_ID}:request:Министерство ЖКХ",
        f"{APPEAL_ID}:request:Министерство транспорта",
    ]
    assert "Министерство ЖКХ" in mails[0].text
    assert "Министерство транспорта" in mails[1].text
    # Each authority is told who else got the same request [004: 10.1].
    assert "Министерство ЖКХ, Министерство транспорта" in mails[0].text


def test_request_subject_carries_a_reference_a_reply_can_be_matched_by() -> None:
    mail = request_letters(make_appeal(), (HOUSING,), DUE_AT)[0]

    assert mail.subject.startswith("[ГЛ-3F2A9C1E-4B7D] ")
    assert find_reference("Re: " + mail.subject) == "3f2a9c1e-4b7d"
    assert APPEAL_ID.startswith(find_reference(mail.subject) or "-")


def test_request_states_summary_address_topic_and_due_time_in_local_time() -> None:
    mail = request_letters(make_appeal(), (HOUSING,), DUE_AT)[0]

    assert "ответ до 24.11.2026 16:00 (UTC+03:00)" in mail.subject
    for fact in ("В квартире нет отопления третий день", "г. Ульяновск, ул. Гончарова, 1",
                 "Отопление", "Срок ответа: 24.11.2026 16:00 (UTC+03:00)",
                 "23.11.2026 09:15 (UTC+03:00)", "Срочно", "первичное"):
        assert fact in mail.text
        assert mail.html is not None and fact in mail.html


def test_request_carries_the_applicant_contact_for_the_responsible_person() -> None:
    mail = request_letters(make_appeal(), (HOUSING,), DUE_AT)[0]

    assert "Петров Иван Сергеевич" in mail.text
    assert "+79001234567" in mail.text
    assert "petrov@mail.test" in mail.text


def test_html_part_escapes_what_the_caller_said_and_keeps_line_breaks() -> None:
    appeal = make_appeal(summary="Трубы <script>alert(1)</script>\nи «течь» & сырость")
    mail = request_letters(appeal, (HOUSING,), DUE_AT)[0]

    assert mail.html is not None
    assert "<script>" not in mail.html
    assert "Трубы &lt;script&gt;alert(1)&lt;/script&gt;<br>\nи «течь» &amp; сырость" in mail.html
    assert "Трубы <script>alert(1)</script>\nи «течь» & сырость" in mail.text


def test_a_line_break_in_the_topic_cannot_break_the_subject() -> None:
    mail = request_letters(make_appeal(topic="Отопление\r\nBcc: x@evil.test"), (HOUSING,),
                           DUE_AT)[0]

    assert "\n" not in mail.subject and "\r" not in mail.subject


def test_missing_problem_address_is_said_not_left_blank() -> None:
    mail = request_letters(make_appeal(problem_address=None), (HOUSING,), DUE_AT)[0]

    assert "Адрес проблемы: не указан" in mail.text


def test_request_needs_an_authority_with_a_responsible_person() -> None:
    with pytest.raises(ValueError):
        request_letters(make_appeal(), (), DUE_AT)
    with pytest.raises(ValueError):
        request_letters(make_appeal(), (EmailTarget("Пустое ведомство", ()),), DUE_AT)


def test_due_time_must_be_aware() -> None:
    with pytest.raises(ValueError):
        request_letters(make_appeal(), (HOUSING,), datetime(2026, 11, 24, 16, 0))


def test_due_time_is_stated_in_the_hotline_region_time_zone() -> None:
    from zoneinfo import ZoneInfo

    irkutsk = LetterTemplates(tz=ZoneInfo("Asia/Irkutsk"))
    mail = request_letters(make_appeal(), (HOUSING,), DUE_AT, templates=irkutsk)[0]

    assert "24.11.2026 21:00 (UTC+08:00)" in mail.text


def test_answer_goes_to_the_applicant_in_russian() -> None:
    mail = answer_letter(make_appeal(), "Подача тепла восстановлена 24.11.2026.")

    assert mail.to == ("petrov@mail.test",)
    assert mail.subject == "Ответ на ваше обращение от 23.11.2026 [ГЛ-3F2A9C1E-4B7D]"
    assert mail.text.startswith("Здравствуйте, Иван Сергеевич!")
    assert "Подача тепла восстановлена 24.11.2026." in mail.text
    assert mail.html is not None and "Подача тепла восстановлена 24.11.2026." in mail.html


def test_the_same_answer_resent_is_the_same_letter_a_new_answer_is_a_new_one() -> None:
    first = answer_letter(make_appeal(), "Подача тепла восстановлена.")
    again = answer_letter(make_appeal(), "  Подача тепла\nвосстановлена. ")
    final = answer_letter(make_appeal(), "Промежуточный ответ: срок продлён до 27.11.2026.")

    assert first.idempotency_key == again.idempotency_key
    assert first.idempotency_key != final.idempotency_key
    assert first.idempotency_key.startswith(f"{APPEAL_ID}:answer:")


def test_answer_needs_the_applicant_email() -> None:
    appeal = make_appeal(applicant=Applicant(last_name="Петров", first_name="Иван",
                                             phone="+79001234567"))
    with pytest.raises(ValueError):
        answer_letter(appeal, "Ответ")


def test_reference_is_made_from_a_uuid_only() -> None:
    assert appeal_reference(APPEAL_ID) == "ГЛ-3F2A9C1E-4B7D"
    with pytest.raises(ValueError):
        appeal_reference("not-a-uuid")
    assert find_reference("Вопрос без ссылки") is None


def test_a_template_with_an_unknown_placeholder_fails_at_start_up(tmp_path: Path) -> None:
    source = Path(str(default_templates_dir()))
    shutil.copytree(source, tmp_path / "templates")
    broken = tmp_path / "templates" / "request.txt"
    broken.write_text(broken.read_text(encoding="utf-8") + "\n${passport_number}\n",
                      encoding="utf-8")

    with pytest.raises(TemplateError, match="passport_number"):
        LetterTemplates(tmp_path / "templates")


def test_a_missing_template_fails_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="not found"):
        LetterTemplates(tmp_path)
