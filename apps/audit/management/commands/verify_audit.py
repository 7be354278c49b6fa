"""`python manage.py verify_audit`: is the audit log as it was written?"""

from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.audit import chain
from apps.audit.models import AuditEvent


class Command(BaseCommand):
    help = (
        "Walk the audit log's hash chain and name the first row that was changed, deleted or "
        "inserted behind Maildesk's back. Exits 1 if the chain is broken."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--anchor",
            metavar="SEAL",
            help="a newest seal printed by an earlier run: the log must still contain it "
            "(rows removed from the end of the log leave no other trace)",
        )

    def handle(self, *args: Any, anchor: str | None = None, **options: Any) -> None:
        rows = (
            AuditEvent.objects.order_by("id")
            .values("id", "previous_seal", "seal", *chain.SEALED_FIELDS)
            .iterator(chunk_size=5000)
        )
        seen = set()
        count, head, broken = chain.verify(_noting_seals(rows, anchor, seen))
        if broken is not None:
            self._fail(f"BROKEN after {count - 1} intact row(s): {broken.description}")
        if anchor and anchor not in seen:
            self._fail(
                f"BROKEN: no row carries the seal {anchor}. Rows were removed from the end of "
                "the log since that seal was noted, or it belongs to another log."
            )
        self.stdout.write(
            self.style.SUCCESS(f"The audit log is intact: {count} row(s).")
            + (f" It still holds the anchor {anchor}." if anchor else "")
            + f"\nNewest seal: {head}\nKeep it elsewhere, and pass it as --anchor to a later"
            " run: that finds rows removed from the end of the log."
        )

    def _fail(self, message: str) -> None:
        self.stderr.write(message)
        raise SystemExit(1)


def _noting_seals(rows: Iterator[dict], anchor: str | None, seen: set[str]) -> Iterator[dict]:
    for row in rows:
        if row["seal"] == anchor:
            seen.add(anchor)
        yield row
