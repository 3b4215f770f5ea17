"""`gateway pos import FILE`: ПОС's own Excel export updates the appeals registered there."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import xlsxwriter

from tests.integration.flows.conftest import PERSONAL, PROBLEM_ADDRESS, SUMMARY, StartFlow

HEADER = [
    "Номер", "Номер ЕПГУ", "Источник", "Категория", "Подкатегория", "Факт",
    "Организация в которую поступило сообщение", "Организация в которой находится сообщение",
    "Дата поступления", "Дата планируемого завершения работ",
    "Дата фактического завершения работ", "Стадия", "Статус", "Просрочено",
    "ФИО координатора", "ФИО исполнителя", "ФИО руководителя",
]
GATEWAY = Path(sys.executable).with_name("gateway")


def export_row(number: str, stage: str, *, received: str = "23.11.2026",
               planned: str = "03.12.2026", status: str = "В работе") -> dict[str, Any]:
    return {
        "Номер": number, "Номер ЕПГУ": "", "Источник": "Оператор",
        "Категория": "Жилищно-коммунальное хозяйство", "Подкатегория": "Отопление",
        # ПОС's «Факт» is the message text, which may quote the applicant.
        "Факт": f"Центр мониторинга 112. {SUMMARY}. Заявитель Пряников В.А., {PROBLEM_ADDRESS}",
        "Организация в которую поступило сообщение": "Министерство ЖКХ",
        "Организация в которой находится сообщение": "Министерство ЖКХ",
        "Дата поступления": received, "Дата планируемого завершения работ": planned,
        "Дата фактического завершения работ": "", "Стадия": stage, "Статус": status,
        "Просрочено": "Нет", "ФИО координатора": "Сидоров С.С.",
        "ФИО исполнителя": "Кузнецова К.К.", "ФИО руководителя": "Орлов О.О.",
    }


def write_export(path: Path, rows: list[dict[str, Any]]) -> None:
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Сообщения")
    sheet.write(0, 0, "Выгрузка сообщений ПОС")  # a title above the header, as ПОС writes
    for col, name in enumerate(HEADER):
        sheet.write(2, col, name)
    for n, row in enumerate(rows, start=3):
        for col, name in enumerate(HEADER):
            sheet.write(n, col, row.get(name, ""))
    book.close()


async def run_import(database_url: str, export: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATABASE_URL"] = database_url
    return await asyncio.to_thread(
        subprocess.run, [str(GATEWAY), "pos", "import", str(export)], cwd=export.parent,
        env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_import_moves_matching_appeals_and_reports_the_rest_without_personal_data(
        start_flow: StartFlow, tmp_path: Path) -> None:
    flow = await start_flow(planned_days=0)
    ready_id, ready_pos = await flow.registered_call()
    working_id, working_pos = await flow.registered_call()
    untouched_id, _ = await flow.registered_call()
    ready_number = flow.pos_message(ready_pos).number  # «ПОС-2026-100001»
    working_digits = str(flow.pos_message(working_pos).id)  # «100002», the export's short form
    due_before = (await flow.get(working_id))["route"]["due_at"]

    export = tmp_path / "pos-export.xlsx"
    write_export(export, [
        export_row(ready_number, "Ответ готов к передаче", status="Ответ подготовлен"),  # row 4
        export_row(working_digits, "Исполнение", planned="28.12.2026"),  # row 5
        export_row("ПОС-2026-999999", "Исполнение"),  # row 6: not ours
        export_row(ready_number.replace("100001", "100003"), "Исполнение",
                   received="31.02.2026"),  # row 7: no such date
    ])
    done = await run_import(flow.database_url, export)

    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "applied: 2" in done.stdout
    assert "unmatched rows: 1" in done.stdout
    assert "rows 6: no appeal of ours has that number" in done.stdout
    assert "row 7: bad date in «Дата поступления»" in done.stdout
    for secret in (*PERSONAL, SUMMARY, PROBLEM_ADDRESS, "Пряников В.А.", "Сидоров", "Кузнецова",
                   "Орлов"):
        assert secret not in output, secret

    ready = await flow.get(ready_id)
    assert ready["status"] == "answer_ready"
    assert ready["external"]["stage"] == "answer_ready"
    working = await flow.get(working_id)
    assert working["status"] == "in_progress"
    assert working["external"]["stage"] == "execution"
    # ПОС's planned date is the platform's own term: the regulation deadline stands.
    assert working["route"]["due_at"] == due_before
    untouched = await flow.get(untouched_id)
    assert untouched["status"] == "registered"  # row 7 was not applied
    assert ready_id in {item["id"] for item in await flow.ready()}


async def test_an_imported_answer_without_its_text_sends_no_empty_letter(
        start_flow: StartFlow, tmp_path: Path) -> None:
    flow = await start_flow(planned_days=0)
    appeal_id, pos_id = await flow.registered_call(answer_channel="email")
    export = tmp_path / "pos-export.xlsx"
    write_export(export, [export_row(flow.pos_message(pos_id).number, "Ответ готов к передаче",
                                     status="Ответ подготовлен")])

    done = await run_import(flow.database_url, export)
    await flow.drain_all()

    assert done.returncode == 0, done.stdout + done.stderr
    assert (await flow.get(appeal_id))["status"] == "answer_ready"
    # The export says only the stage: an operator reads the answer in ПОС and delivers it.
    assert [r["action"] for r in await flow.outbox_rows(appeal_id)
            if r["target"] == "email"] == []
    assert flow.letters() == []
    assert appeal_id in {item["id"] for item in await flow.ready()}
