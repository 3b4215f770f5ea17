"""Updating appeals from a target system's own export: the path for regions without API access.

Rows are matched to appeals by the external number (ПОС's «Номер»), which an export may
write with or without its prefix («ПОС-2026-123456» or «123456»), and applied like any
polled change. Rows that match nothing are reported by row number, never by content.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import tzinfo

from gateway.domain.ports import Clock, ExternalUpdate
from gateway.services.remote_updates import apply_changes
from gateway.services.unit_of_work import Storage


@dataclass(frozen=True, slots=True)
class ExportedRow:
    row: int  # the spreadsheet row, for the report
    number: str  # the external number as the export writes it
    change: ExternalUpdate


@dataclass
class ImportReport:
    applied: int = 0
    unchanged: int = 0
    unmatched: list[int] = field(default_factory=list)  # row numbers

    def text(self, bad_rows: Sequence[tuple[int, str]] = ()) -> str:
        lines = [f"applied: {self.applied}", f"unchanged: {self.unchanged}",
                 f"unmatched rows: {len(self.unmatched)}"]
        if self.unmatched:
            lines.append("  rows " + ", ".join(str(r) for r in self.unmatched)
                         + ": no appeal of ours has that number")
        if bad_rows:
            lines.append(f"rows that could not be read: {len(bad_rows)}")
            lines += [f"  row {row}: {reason}" for row, reason in bad_rows]
        return "\n".join(lines)


async def import_rows(
    storage: Storage, system: str, rows: Sequence[ExportedRow], *, clock: Clock,
    zone_of: Callable[[str], tzinfo],
) -> ImportReport:
    report = ImportReport()
    now = clock.now()
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
    return report
