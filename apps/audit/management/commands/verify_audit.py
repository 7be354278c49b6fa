"""`python manage.py verify_audit`: is the audit log as it was written?"""

from typing import Any

from django.core.management.base import BaseCommand

from apps.audit import chain
from apps.audit.models import AuditEvent


class Command(BaseCommand):
    help = (
        "Walk the audit log's hash chain and name the first row that was changed, deleted or "
        "inserted behind Maildesk's back. Exits 1 if the chain is broken."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        rows = (
            AuditEvent.objects.order_by("id")
            .values("id", "previous_seal", "seal", *chain.SEALED_FIELDS)
            .iterator(chunk_size=5000)
        )
        count, head, broken = chain.verify(rows)
        if broken is not None:
            self.stderr.write(f"BROKEN after {count - 1} intact row(s): {broken.description}")
            raise SystemExit(1)
        self.stdout.write(
            self.style.SUCCESS(f"The audit log is intact: {count} row(s).")
            + f"\nNewest seal: {head}\nKeep it elsewhere: rows removed from the end of the log"
            " are found by comparing it with a later run."
        )
