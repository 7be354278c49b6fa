"""`python manage.py seed_scale`: a large synthetic Maildesk, for measuring the list pages.

Writes N audit rows sealed on the hash chains exactly as `audit_record` seals them (so
`verify_audit` passes afterwards), and M requests (apps.core.scale says what they are). On
PostgreSQL the rows go in by COPY: 1,000,000 + 100,000 rows take well under a minute on two
cores. Other databases take small counts only.

The audit log is append-only (its rows can never be removed), so the command writes only into
a database that holds nothing but its own output: no audit row, request, person or domain of
anyone else. `--allow-existing` adds to a database that an earlier run of this command started.
"""

import json
import random
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection, models, transaction

from apps.accounts.models import MailDomain
from apps.audit.models import AuditEvent
from apps.core.scale import MARKER_ACTION, PREFIX, REQUESTER, Plan
from apps.provisioning.models import ProvisioningRequest

# Past this many rows, only PostgreSQL (COPY) is fast enough; and nothing absurd anywhere.
SMALL_COUNT = 10_000
MAX_AUDIT_ROWS, MAX_REQUESTS = 50_000_000, 10_000_000
OWN_REQUESTS = 1000


class Command(BaseCommand):
    help = (
        "Fill an empty database with synthetic audit rows (validly sealed) and requests, for "
        "measuring the list pages at scale. Refuses a database that holds anything else."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--audit", type=int, default=1_000_000, help="audit rows to write")
        parser.add_argument("--requests", type=int, default=100_000, help="requests to write")
        parser.add_argument(
            "--own-requests",
            type=int,
            help=f"how many of the requests are {REQUESTER}'s (default: 1,000, or a tenth of "
            "--requests if fewer)",
        )
        parser.add_argument("--seed", type=int, default=1, help="random seed (same data again)")
        parser.add_argument(
            "--allow-existing",
            action="store_true",
            help="add to a database that an earlier run of seed_scale started (never to another)",
        )
        parser.add_argument(
            "--throwaway-database",
            action="store_true",
            help="run with production settings (DJANGO_DEBUG=false): say so only for a database "
            "made for measuring, never a deployment's",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        audit_rows, requests = options["audit"], options["requests"]
        own = options["own_requests"]
        if own is None:
            own = min(OWN_REQUESTS, requests // 10)
        for name, value, limit in [("--audit", audit_rows, MAX_AUDIT_ROWS),
                                   ("--requests", requests, MAX_REQUESTS),
                                   ("--own-requests", own, requests)]:  # fmt: skip
            if not 0 <= value <= limit:
                raise CommandError(f"{name} must be between 0 and {limit:,} (got {value:,}).")
        if not settings.DEBUG and not options["throwaway_database"]:
            # A freshly migrated deployment is empty too, and its log could never be cleaned.
            raise CommandError(
                "DJANGO_DEBUG is false: this looks like a deployment, whose audit log could never "
                "be rid of a million fake rows. For a database made only for measuring, pass "
                "--throwaway-database."
            )
        postgresql = connection.vendor == "postgresql"
        if not postgresql and audit_rows + requests > SMALL_COUNT:
            raise CommandError(
                f"More than {SMALL_COUNT:,} rows need PostgreSQL (this is {connection.vendor}): "
                "set DATABASE_URL=postgres://..."
            )
        started = time.monotonic()
        try:
            with transaction.atomic():
                self._refuse_unless_ours(allow_existing=options["allow_existing"])
                # Synthetic data, not secrets: a seeded generator gives the same data again.
                rng = random.Random(options["seed"])  # noqa: S311
                plan = Plan(rng, requests, own, audit_rows)
                # Every read before the writing: a COPY holds the connection until it ends.
                plan.make_people()
                plan.take_chains()
                writer = _copy if postgresql else _insert
                writer(ProvisioningRequest, plan.request_rows())
                written = writer(AuditEvent, plan.audit_rows())
        except DatabaseError as error:
            raise CommandError(
                f"The database refused the rows; nothing was written: {error}"
            ) from None
        self.stdout.write(
            f"Wrote {written:,} audit rows and {requests:,} requests "
            f"({own:,} of them {REQUESTER}'s) in {time.monotonic() - started:.1f} s."
        )

    def _refuse_unless_ours(self, *, allow_existing: bool) -> None:
        """Nothing may be in the database but an earlier run's output, and that only when asked.

        The log of a database this command started begins with its marker row; anything else
        is someone's real log, which fake rows would pollute for good.
        """
        others = {
            "audit rows": AuditEvent.objects.exists(),
            "requests": ProvisioningRequest.objects.exists(),
            "people": get_user_model().objects.exclude(username__startswith=PREFIX).exists(),
            "domains": MailDomain.objects.exclude(name__startswith=PREFIX).exists(),
        }
        present = [name for name, exists in others.items() if exists]
        if not present:
            return
        first = AuditEvent.objects.order_by("id").values_list("action", flat=True).first()
        ours = first == MARKER_ACTION and not others["people"] and not others["domains"]
        if not ours:
            raise CommandError(
                f"This database already holds {', '.join(present)} that seed_scale did not "
                "write. Audit rows can never be removed, so seed_scale only fills a fresh "
                "database: create an empty one and point DATABASE_URL at it."
            )
        if not allow_existing:
            raise CommandError(
                "This database already holds an earlier run's rows: add --allow-existing to "
                "add more, or use a fresh database."
            )


# --- Writing ---------------------------------------------------------------------------------


def _columns(model: type[models.Model]) -> list[models.Field]:
    return [f for f in model._meta.concrete_fields if not f.primary_key]


def _copy(model: type[models.Model], rows: Iterator[dict[str, Any]]) -> int:
    """PostgreSQL's COPY, with the rows as Python values (JSON as its text)."""
    fields = _columns(model)
    names = [f.attname for f in fields]
    json_columns = {i for i, f in enumerate(fields) if isinstance(f, models.JSONField)}
    statement = "COPY {} ({}) FROM STDIN".format(
        connection.ops.quote_name(model._meta.db_table),
        ", ".join(connection.ops.quote_name(f.column) for f in fields),
    )
    count = 0
    # COPY goes to psycopg's cursor directly, past the wrapper that turns psycopg's errors into
    # Django's DatabaseError (which the command reports as a message, not a traceback).
    with (
        connection.wrap_database_errors,
        connection.cursor() as cursor,
        cursor.copy(statement) as copy,
    ):
        for row in rows:
            values = [row[name] for name in names]
            for i in json_columns:
                values[i] = json.dumps(values[i])
            copy.write_row(values)
            count += 1
    return count


def _insert(model: type[models.Model], rows: Iterator[dict[str, Any]]) -> int:
    """Plain INSERTs, each value prepared as the ORM would (small counts on other databases)."""
    fields = _columns(model)
    names = [f.attname for f in fields]
    # Names from the model's own metadata, quoted; the values go as parameters.
    statement = "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608
        connection.ops.quote_name(model._meta.db_table),
        ", ".join(connection.ops.quote_name(f.column) for f in fields),
        ", ".join(["%s"] * len(fields)),
    )
    prepared = [
        [f.get_db_prep_save(row[name], connection) for f, name in zip(fields, names, strict=True)]
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(statement, prepared)
    return len(prepared)
