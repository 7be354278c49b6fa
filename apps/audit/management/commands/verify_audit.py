"""`python manage.py verify_audit`: is the audit log as it was written?"""

import re
from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit import chain
from apps.audit.models import AuditEvent

# What runs before the log had several chains printed: the newest seal alone.
SINGLE_SEAL = re.compile(r"[0-9a-f]{64}")


class Command(BaseCommand):
    help = (
        "Walk the audit log's hash chains and name the first row that was changed, deleted or "
        "inserted behind Maildesk's back. Exits 1 if a chain is broken."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--anchor",
            metavar="ANCHOR",
            help="the anchor printed by an earlier run: every chain must still end in a row it "
            "pinned, or go on past it (rows removed from the end of the log leave no other trace)",
        )

    def handle(self, *args: Any, anchor: str | None = None, **options: Any) -> None:
        anchor = (anchor or "").strip()
        pins = chain.parse_anchor(anchor) if anchor else {}
        old_seal = anchor if anchor and SINGLE_SEAL.fullmatch(anchor) else None
        if anchor and pins is None and old_seal is None:
            raise CommandError(
                "--anchor takes the value an earlier run printed, such as 0.1234,1.1240:9f86d0…"
            )
        rows = (
            AuditEvent.objects.order_by("id")
            .values("id", "chain", "previous_seal", "seal", *chain.SEALED_FIELDS)
            .iterator(chunk_size=5000)
        )
        found: dict[int, chain.End] = {}
        seen_old_seal: list[bool] = []
        count, ends, broken = chain.verify(
            _watching(rows, pins or {}, found, old_seal, seen_old_seal)
        )
        if broken is not None:
            self._fail(f"BROKEN after {count - 1} intact row(s): {broken.description}")
        if pins:
            self._check_pins(anchor, pins, found)
        if old_seal and not seen_old_seal:
            self._fail(
                f"BROKEN: no row carries the seal {old_seal}. Rows were removed from the end of "
                "the log since that seal was noted, or it belongs to another log."
            )
        new_anchor = chain.anchor(ends)
        self.stdout.write(
            self.style.SUCCESS(f"The audit log is intact: {count} row(s).")
            + (" Every row the anchor pinned is still there." if anchor else "")
            + (
                f"\nAnchor: {new_anchor}\nKeep it elsewhere, and pass it as --anchor to a later "
                "run: that finds rows removed from the end of the log."
                if new_anchor
                else "\nThe log is empty: there is nothing to anchor yet."
            )
        )

    def _check_pins(self, anchor: str, pins: dict[int, int], found: dict[int, chain.End]) -> None:
        for number, row_id in sorted(pins.items()):
            if number not in found:
                self._fail(
                    f"BROKEN: row {row_id}, the end of chain {number} when the anchor was taken, "
                    "is gone. Rows were removed from the end of the log since, or the anchor "
                    "belongs to another log."
                )
        if not chain.anchor_holds(anchor, found):
            self._fail(
                "BROKEN: the rows that ended the chains when the anchor was taken are not those "
                "rows any more, or the anchor belongs to another log."
            )

    def _fail(self, message: str) -> None:
        self.stderr.write(message)
        raise SystemExit(1)


def _watching(
    rows: Iterator[dict],
    pins: dict[int, int],
    found: dict[int, chain.End],
    old_seal: str | None,
    seen_old_seal: list[bool],
) -> Iterator[dict]:
    """Pass the rows on, noting the rows the anchor pinned (on their chains)."""
    for row in rows:
        if pins.get(row["chain"]) == row["id"]:
            found[row["chain"]] = chain.End(row["id"], row["seal"])
        if old_seal is not None and row["seal"] == old_seal:
            seen_old_seal.append(True)
        yield row
