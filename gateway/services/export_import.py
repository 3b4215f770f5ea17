"""Updating appeals from a target system's own export: the path for regions without API access.

Rows are matched to appeals by the external number (ПОС's «Номер»), which an export may
write with or without its prefix («ПОС-2026-123456» or «123456»), and applied like any
polled change. Rows that match nothing are reported by row number, never by content.

Given the outbox, the export also settles what people would otherwise check by hand in
ПОС's UI (the EAS dialect, adapters/pos/CONTRACT.md): a create parked as ambiguous whose
marker («<prefix> № <journal id>») starts exactly one row's «Факт» was made — the appeal is
registered with that row's number, as `OutboxAdmin.record_found` would, and the parked row
is cancelled; and a dead delivery confirmation of an appeal the export shows delivered
(«Ответ передан заявителю») is cancelled, since ПОС already says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo

from gateway.domain.appeal import Appeal, AppealStatus
from gateway.domain.ports import Clock, ExternalRef, ExternalUpdate
from gateway.services import outbox_actions
from gateway.services.outbox_admin import is_parked
from gateway.services.remote_updates import apply_changes
from gateway.services.unit_of_work import AuditEntry, Storage
from outbox import MessageRecord, OutboxStore, State

ACTOR = "pos-export"
_PAGE = 500


@dataclass(frozen=True, slots=True)
class ExportedRow:
    row: int  # the spreadsheet row, for the report
    number: str  # the external number as the export writes it
    change: ExternalUpdate
    fact: str | None = None  # «Факт»: the message text; compared, never logged (152-ФЗ)


@dataclass
class ImportReport:
    applied: int = 0
    unchanged: int = 0
    unmatched: list[int] = field(default_factory=list)  # row numbers
    found: int = 0  # parked creates found by their marker and registered
    confirmed: int = 0  # dead delivery confirmations the export shows done
    # Parked appeals whose marker starts several rows: left for a person (row numbers).
    doubtful: list[list[int]] = field(default_factory=list)

    def text(self, bad_rows: Sequence[tuple[int, str]] = ()) -> str:
        lines = [f"applied: {self.applied}", f"unchanged: {self.unchanged}",
                 f"unmatched rows: {len(self.unmatched)}"]
        if self.unmatched:
            lines.append("  rows " + ", ".join(str(r) for r in self.unmatched)
                         + ": no appeal of ours has that number")
        if self.found or self.confirmed or self.doubtful:
            lines.append(f"parked creates found: {self.found}")
            lines.append(f"delivery confirmations closed: {self.confirmed}")
        for rows in self.doubtful:
            lines.append("  rows " + ", ".join(str(r) for r in rows)
                         + ": one parked appeal's marker starts several rows; "
                         "record its ПОС id by hand")
        if bad_rows:
            lines.append(f"rows that could not be read: {len(bad_rows)}")
            lines += [f"  row {row}: {reason}" for row, reason in bad_rows]
        return "\n".join(lines)


async def import_rows(
    storage: Storage, system: str, rows: Sequence[ExportedRow], *, clock: Clock,
    zone_of: Callable[[str], tzinfo], outbox: OutboxStore | None = None,
    marker_of: Callable[[Appeal], str | None] | None = None,
) -> ImportReport:
    """`outbox` lets the export settle dead letters; `marker_of` (the dialect's marker of
    an appeal, None when it has none) lets it find parked creates."""
    report = ImportReport()
    now = clock.now()
    dead = await _dead_rows(outbox, system) if outbox is not None else []
    parked = {row.ordering_key: row for row in dead
              if (row.target, row.action) == outbox_actions.POS_REGISTER
              and is_parked(row.last_error)}
    if parked and marker_of is not None:
        await _find_parked(storage, system, rows, parked, marker_of, now, report)
    confirmations = {row.ordering_key: row for row in dead
                     if (row.target, row.action) == outbox_actions.POS_CONFIRM_DELIVERY}
    async with storage.write() as uow:
        for exported in rows:
            found = await uow.appeals.ids_by_external_number(system, exported.number.strip())
            if len(found) != 1:
                report.unmatched.append(exported.row)
                continue
            appeal = (await uow.appeals.get_many(found))[found[0]]
            external_id = appeal.external.id if appeal.external else exported.change.external_id
            change = replace(exported.change, appeal_id=found[0], external_id=external_id)
            if await apply_changes(uow, system, [change], now, zone_of=zone_of):
                report.applied += 1
            else:
                report.unchanged += 1
            waiting = confirmations.pop(found[0], None)
            if waiting is not None and exported.change.status is AppealStatus.DELIVERED:
                uow.dismiss(waiting.idempotency_key,
                            f"cancelled: ПОС's export shows the answer delivered "
                            f"(ПОС {external_id})")
                uow.audit(AuditEntry(now, ACTOR, "outbox.confirmed_in_remote", found[0],
                                     {"outbox_id": waiting.id, "external_id": external_id}))
                report.confirmed += 1
    return report


async def _dead_rows(outbox: OutboxStore, system: str) -> list[MessageRecord]:
    dead: list[MessageRecord] = []
    after: int | None = None
    while True:
        page = await outbox.list_messages(State.DEAD, target=system, limit=_PAGE,
                                          after_id=after)
        dead.extend(page)
        if len(page) < _PAGE:
            return dead
        after = page[-1].id


def _starts_with(text: str, marker: str) -> bool:
    """«… № 12» starts «… № 12. Текст», not «… № 123. Текст»."""
    text = " ".join(text.split())
    if not text.startswith(marker):
        return False
    rest = text[len(marker):]
    return not rest or not rest[0].isalnum()


async def _find_parked(storage: Storage, system: str, rows: Sequence[ExportedRow],
                       parked: dict[str, MessageRecord],
                       marker_of: Callable[[Appeal], str | None], now: datetime,
                       report: ImportReport) -> None:
    """Registers each parked appeal whose marker starts exactly one row's «Факт»."""
    async with storage.write() as uow:
        appeals = await uow.appeals.get_many(sorted(parked))
        for appeal_id, appeal in appeals.items():
            if appeal.status is not AppealStatus.FAILED or appeal.external is not None:
                continue  # already resolved (recorded by hand, or registered on a re-drive)
            marker = marker_of(appeal)
            if not marker:
                continue
            marker = " ".join(marker.split())
            matches = [r for r in rows if r.fact and _starts_with(r.fact, marker)]
            if len(matches) > 1:
                report.doubtful.append([r.row for r in matches])
                continue
            if not matches:
                continue
            number = matches[0].number.strip()
            appeal.register(ExternalRef(system, number, number), now)
            uow.audit(AuditEntry(now, ACTOR, "forwarding.found_remote", appeal_id,
                                 {"system": system, "external_id": number,
                                  "row": matches[0].row}))
            uow.dismiss(parked[appeal_id].idempotency_key,
                        f"cancelled: found in ПОС's export as ПОС {number}; "
                        "the appeal is registered")
            report.found += 1
