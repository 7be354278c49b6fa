"""`python manage.py verify_audit`: is the audit log as it was written?"""

import re
from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit import chain
from apps.audit.models import AuditEvent

ANCHOR = re.compile(r"(\d+):([0-9a-f]{64})")


class Command(BaseCommand):
    help = (
        "Walk the audit log's hash chains and name the first row that was changed, deleted or "
        "inserted behind Maildesk's back. Exits 1 if a chain is broken."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--anchor",
            metavar="ANCHOR",
            help="the anchor printed by an earlier run: the log must still hold every row it "
            "covered (rows removed from the end of the log leave no other trace)",
        )

    def handle(self, *args: Any, anchor: str | None = None, **options: Any) -> None:
        pinned_id = None
        if anchor:
            match = ANCHOR.fullmatch(anchor.strip())
            if match is None:
                raise CommandError(
                    "--anchor takes the value an earlier run printed, such as 1234:9f86d0…"
                )
            pinned_id = int(match.group(1))
        rows = (
            AuditEvent.objects.order_by("id")
            .values("id", "chain", "previous_seal", "seal", *chain.SEALED_FIELDS)
            .iterator(chunk_size=5000)
        )
        heads_at_pin: dict[int, str] = {}
        last_id = [0]
        count, heads, broken = chain.verify(_watching(rows, pinned_id, heads_at_pin, last_id))
        if broken is not None:
            self._fail(f"BROKEN after {count - 1} intact row(s): {broken.description}")
        if anchor and chain.anchor(pinned_id, heads_at_pin) != anchor.strip():
            self._fail(
                f"BROKEN: the rows up to {pinned_id} are not those the anchor was taken from. "
                "Rows were removed from the end of the log since, or the anchor belongs to "
                "another log."
            )
        self.stdout.write(
            self.style.SUCCESS(f"The audit log is intact: {count} row(s).")
            + (" It still holds every row of the anchor." if anchor else "")
            + f"\nAnchor: {chain.anchor(last_id[0], heads)}\nKeep it elsewhere, and pass it as"
            " --anchor to a later run: that finds rows removed from the end of the log."
        )

    def _fail(self, message: str) -> None:
        self.stderr.write(message)
        raise SystemExit(1)


def _watching(
    rows: Iterator[dict], pinned_id: int | None, heads_at_pin: dict[int, str], last_id: list[int]
) -> Iterator[dict]:
    """Pass the rows on, noting each chain's newest seal up to the pinned id, and the last id."""
    for row in rows:
        if pinned_id is not None and row["id"] <= pinned_id:
            heads_at_pin[row["chain"]] = row["seal"]
        last_id[0] = row["id"]
        yield row
