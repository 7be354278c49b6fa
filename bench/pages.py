"""List pages at scale: does the deepest page cost what the first costs, for every reader?

    python -m bench.pages [--quick | --scale 0.1] [--rounds 15]

A fresh PostgreSQL database gets 1,000,000 audit rows and 100,000 requests (`manage.py
seed_scale`), checked by `verify_audit`; a second one gets the same requester with the same
1,000 own requests, among 1,000. The portal runs with production settings (debug off, hashed
static files, a verified second factor) and each page goes through Django's test client: the
real middleware, view and template. Every line interleaves its variants in rounds and takes
medians, so that the machine's noise falls on both sides of a ratio alike:

- first page against the deepest one (the last full page, reached by keyset `before`), for the
  audit log and the request list as the people who read them: target <= 1.5;
- beside each, the same query with OFFSET to the same depth (the SQL alone, through the ORM,
  as is the keyset page's SQL): the baseline keyset pagination replaced; and for a scoped
  reader, the keyset page over one OR of the scope, as the page ran before its scope was read
  as a union of branches (apps.core.pagination);
- a requester's own list among 100,000 requests against among 1,000: target ~1.0;
- SQL queries per page at size 100 against size 10: target 1.0 exactly.

Prints a table with PASS or FAIL per line and drops both databases. Bounded: about
100 s at full scale on two cores (seeding and verify_audit, half a minute each, included); the
rounds stop early past 150 s of measuring.
"""

import argparse
import contextlib
import os
import random
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.environment import production_settings
from bench.measure import median, verdict
from chaos.harness import postgres_admin_url

# The same server as the other parts: a role that may create databases.
ADMIN_URL = postgres_admin_url()
AUDIT_ROWS, REQUESTS, OWN_REQUESTS = 1_000_000, 100_000, 1_000
SMALL_AUDIT_ROWS = 1_000
DEEPEST_TARGET, SAME_TARGET = 1.5, (0.8, 1.25)
# Rounds stop early past this many seconds of measuring (at least MIN_ROUNDS are run).
MEASURE_BUDGET, MIN_ROUNDS = 150.0, 5
# What the TLS-terminating proxy in front of the portal adds to every request.
PROXY_HEADERS = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.10"}
AUDIT_ROW = re.compile(r'<td class="text-nowrap"><time')
REQUEST_ROW = re.compile(r'href="/requests/REQ-[0-9A-Z]+/"')


def pages_settings(database_url: str, workdir: Path) -> dict[str, str]:
    """Production settings on this database, for Django in this process."""
    return {
        **production_settings(workdir),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "MAILDESK_ENV_FILE": "",
        "DATABASE_URL": database_url,
        "MAILDESK_VAR_DIR": str(workdir / "var"),
        "MAILDESK_LOG_LEVEL": "WARNING",
    }


@contextlib.contextmanager
def fresh_databases(*names: str) -> Iterator[list[str]]:
    """Empty databases, dropped at the end whatever happens."""
    base = ADMIN_URL.rsplit("/", 1)[0]
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        for name in names:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield [f"{base}/{name}" for name in names]
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            for name in names:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


# --- Measuring ---------------------------------------------------------------------------------


@dataclass
class Timed:
    """One thing timed once in every round (milliseconds)."""

    name: str
    run: Callable[[], Any]
    database: str = "big"
    samples: list[float] = field(default_factory=list)

    def once(self) -> None:
        started = time.perf_counter()
        self.run()
        self.samples.append((time.perf_counter() - started) * 1000)

    @property
    def median(self) -> float:
        return median(self.samples)


class Bench:
    """The databases, the people signed in, and what is timed."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.items: dict[str, Timed] = {}
        self.lines: list[tuple[str, str, str, str, str, str]] = []
        self.failed = 0

    # Switching the whole portal from one database to the other: Django's default connection
    # is swapped (each keeps its own server connection open).
    @contextlib.contextmanager
    def on(self, database: str) -> Iterator[None]:
        from django.db import connections

        previous = connections["default"]
        connections["default"] = self.wrappers[database]
        try:
            yield
        finally:
            connections["default"] = previous

    def prepare(self, big_url: str, small_url: str) -> None:
        from django.core.management import call_command
        from django.db import connections
        from django.db.utils import load_backend

        big = connections["default"]
        small_settings = {**big.settings_dict, "NAME": small_url.rsplit("/", 1)[1]}
        small = load_backend(big.settings_dict["ENGINE"]).DatabaseWrapper(small_settings, "default")
        self.wrappers = {"big": big, "small": small}
        call_command("collectstatic", interactive=False, verbosity=0)
        audit_rows, requests = round(AUDIT_ROWS * self.scale), round(REQUESTS * self.scale)
        own = min(OWN_REQUESTS, requests // 10)
        for database, arguments in [
            ("big", [f"--audit={audit_rows}", f"--requests={requests}", f"--own-requests={own}"]),
            (
                "small",
                [f"--audit={SMALL_AUDIT_ROWS}", f"--requests={own}", f"--own-requests={own}"],
            ),
        ]:
            arguments.append("--throwaway-database")  # production settings, fresh databases
            with self.on(database):
                call_command("migrate", verbosity=0)
                started = time.monotonic()
                output = _captured(call_command, "seed_scale", *arguments)
                seeded = time.monotonic() - started
                started = time.monotonic()
                with connections["default"].cursor() as cursor:
                    cursor.execute("VACUUM ANALYZE")
                vacuumed = time.monotonic() - started
                print(f"{database} database: {output.strip()} VACUUM ANALYZE {vacuumed:.1f} s.")
                if database == "big":
                    self.seeding = (audit_rows, requests, seeded)
                    started = time.monotonic()
                    first_line = _captured(call_command, "verify_audit").splitlines()[0]
                    print(f"verify_audit: {first_line} ({time.monotonic() - started:.1f} s)")
        self.own = own
        self.clients = {database: self._sign_in(database) for database in ("big", "small")}

    def _sign_in(self, database: str) -> dict[str, Any]:
        """A test client per person, signed in with a verified second factor, as in production."""
        from django.contrib.auth import get_user_model
        from django.test import Client
        from django_otp import DEVICE_ID_SESSION_KEY
        from django_otp.plugins.otp_totp.models import TOTPDevice

        from apps.core import scale

        clients = {}
        with self.on(database):
            for username in (scale.ADMIN, scale.AUDITOR, scale.APPROVER, scale.REQUESTER,
                             scale.NEWCOMER):  # fmt: skip
                user = get_user_model().objects.get(username=username)
                device = TOTPDevice.objects.create(user=user, name="bench", confirmed=True)
                client = Client(headers=PROXY_HEADERS)
                client.force_login(user)
                session = client.session
                session[DEVICE_ID_SESSION_KEY] = device.persistent_id
                session.save()
                client.user = user
                clients[username] = client
        return clients

    # --- What is timed ---------------------------------------------------------------------------

    def page(self, name: str, database: str, who: str, address: str, rows: re.Pattern,
             size: int, last: bool) -> None:  # fmt: skip
        """A whole page through the test client; checked once before it is timed."""
        client = self.clients[database][who]

        def fetch() -> None:
            response = client.get(address)
            if response.status_code != 200:
                raise RuntimeError(f"{name}: {address} answered {response.status_code}")

        with self.on(database):
            page = client.get(address)
        body = page.content.decode()
        shown, older = len(rows.findall(body)), ">Older</a>" in body
        if page.status_code != 200 or shown != size or older == last:
            raise RuntimeError(f"{name}: {address} showed {shown} rows, Older link {older}")
        self.items[name] = Timed(name, fetch, database)

    def sql(self, name: str, run: Callable[[], Any]) -> None:
        """The page's SQL alone (through the ORM), in the big database."""
        self.items[name] = Timed(name, run)

    def measure(self, rounds: int) -> None:
        """Every item once per round, in a new order each round; the small database's items
        together (switching costs a warm-up request), before or after the others in turn."""
        rng = random.Random(7)
        started = time.monotonic()
        for number in range(rounds):
            groups = {"big": [], "small": []}
            for item in self.items.values():
                groups[item.database].append(item)
            order = ["big", "small"] if number % 2 else ["small", "big"]
            for database in order:
                items = groups[database]
                rng.shuffle(items)
                with self.on(database):
                    if items:
                        items[0].run()  # warm-up: the connection may have been recycled
                    for item in items:
                        item.once()
            if number + 1 >= MIN_ROUNDS and time.monotonic() - started > MEASURE_BUDGET:
                print(f"(stopped after {number + 1} rounds: the time budget is spent)")
                break

    # --- The table -------------------------------------------------------------------------------

    def line(self, label: str, first: str, deepest: str, *, target: str = "",
             passed: bool | None = None) -> None:  # fmt: skip
        """A table line; `first` and `deepest` are item names (ratio deepest / first)."""
        a, b = self.items[first].median, self.items[deepest].median
        ratio = b / a
        judged = "" if passed is None else verdict(passed)
        self.failed += passed is False
        self.lines.append((label, f"{a:.2f}", f"{b:.2f}", f"{ratio:.2f}", target, judged))

    def deepest_line(self, label: str, first: str, deepest: str) -> None:
        ratio = self.items[deepest].median / self.items[first].median
        self.line(label, first, deepest, target=f"<= {DEEPEST_TARGET}",
                  passed=ratio <= DEEPEST_TARGET)  # fmt: skip

    def same_line(self, label: str, small: str, big: str) -> None:
        ratio = self.items[big].median / self.items[small].median
        low, high = SAME_TARGET
        self.line(label, small, big, target="~1.0", passed=low <= ratio <= high)

    def print_table(self, heading: tuple[str, str, str]) -> None:
        rows = [("", *heading, "ratio", "target", ""), *self.lines]
        widths = [max(len(row[i]) for row in rows) for i in range(6)]
        for row in rows:
            cells = [row[0].ljust(widths[0])]
            cells += [row[i].rjust(widths[i]) for i in range(1, 5)]
            print("  ".join([*cells, row[5]]).rstrip())
        self.lines = []


def _captured(function: Callable, *args: Any) -> str:
    import io

    output = io.StringIO()
    function(*args, stdout=output)
    return output.getvalue()


# --- The lists -----------------------------------------------------------------------------------


@dataclass
class Listing:
    """One list as one person reads it."""

    key: str
    label: str
    database: str
    who: str
    path: str
    query: str  # the filters, e.g. "mine=on"
    size: int
    rows: re.Pattern
    # The ids the person sees, newest first, and the same query for OFFSET.
    visible: Callable[[Any], Any]


def deepest_before(ids: list[int], size: int) -> int:
    """The `before` of the last full page: exactly `size` rows below it."""
    return ids[len(ids) - size - 1]


def run(scale: float, rounds: int) -> int:
    bench = Bench(scale)
    names = [f"maildesk_pages_{uuid.uuid4().hex[:10]}", f"maildesk_pages_{uuid.uuid4().hex[:10]}"]
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="maildesk-pages-") as workdir,
        fresh_databases(*names) as (big_url, small_url),
    ):
        os.environ.update(pages_settings(big_url, Path(workdir)))
        import django

        django.setup()
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from apps.audit.models import AuditEvent
        from apps.audit.selectors import event_scope, events_visible_to
        from apps.core import scale as personas
        from apps.core.pagination import keyset_page
        from apps.provisioning.models import ProvisioningRequest
        from apps.provisioning.selectors import request_scope, requests_visible_to

        bench.prepare(big_url, small_url)

        def own_requests(user: Any) -> Any:
            return ProvisioningRequest.objects.filter(requested_by=user)

        audit, requests = "/audit/", "/requests/"
        listings = [
            Listing("audit-auditor", "Audit log, auditor", "big", personas.AUDITOR, audit, "",
                    50, AUDIT_ROW, events_visible_to),
            Listing("audit-approver", "Audit log, approver of 2 small domains", "big",
                    personas.APPROVER, audit, "", 50, AUDIT_ROW, events_visible_to),
            Listing("audit-newcomer", "Audit log, newcomer (1 recent domain)", "big",
                    personas.NEWCOMER, audit, "", 50, AUDIT_ROW, events_visible_to),
            Listing("audit-requester", "Audit log, requester (1 domain, own requests)", "big",
                    personas.REQUESTER, audit, "", 50, AUDIT_ROW, events_visible_to),
            Listing("requests-admin", "Requests, portal admin", "big", personas.ADMIN, requests,
                    "", 25, REQUEST_ROW, requests_visible_to),
            Listing("requests-approver", "Requests, approver of 2 small domains", "big",
                    personas.APPROVER, requests, "", 25, REQUEST_ROW, requests_visible_to),
            Listing("requests-newcomer", "Requests, newcomer (1 recent domain)", "big",
                    personas.NEWCOMER, requests, "", 25, REQUEST_ROW, requests_visible_to),
            Listing("requests-mine", "Requests, requester, only mine", "big", personas.REQUESTER,
                    requests, "mine=on", 25, REQUEST_ROW, own_requests),
            Listing("requests-mine-small", "Requests, requester, only mine", "small",
                    personas.REQUESTER, requests, "mine=on", 25, REQUEST_ROW, own_requests),
        ]  # fmt: skip
        depth: dict[str, tuple[int, int, int]] = {}
        for listing in list(listings):
            with bench.on(listing.database):
                user = bench.clients[listing.database][listing.who].user
                visible = listing.visible(user).order_by("-id")
                ids = list(visible.values_list("id", flat=True))
            if len(ids) < 100:
                # Neither a deeper page nor a full page of 100: a small --scale.
                print(f"Skipped {listing.label}: {len(ids)} rows at this scale.")
                listings.remove(listing)
                continue
            before = deepest_before(ids, listing.size)
            depth[listing.key] = (len(ids), before, len(ids) - listing.size)
            query = f"{listing.query}&" if listing.query else ""
            first = f"{listing.path}?{listing.query}"
            deepest = f"{listing.path}?{query}before={before}"
            bench.page(f"{listing.key} first", listing.database, listing.who, first,
                       listing.rows, listing.size, last=False)  # fmt: skip
            bench.page(f"{listing.key} deepest", listing.database, listing.who, deepest,
                       listing.rows, listing.size, last=True)  # fmt: skip
            if listing.database != "big":
                continue
            # The page's SQL alone, keyset and OFFSET, through the ORM (rows made into objects).
            is_audit = listing.path == audit
            model = AuditEvent if is_audit else ProvisioningRequest
            base = model.objects.all()
            if not is_audit:
                base = base.select_related("requested_by", "decided_by")
            branches = (
                event_scope(user, per_domain=True)
                if is_audit
                else request_scope(user, per_domain=True, only_own=bool(listing.query))
            )

            def keyset(before: int | None, base=base, branches=branches, size=listing.size):
                return lambda: keyset_page(base, before=before, size=size, branches=branches)

            def offset(skip: int, visible=visible, size=listing.size):
                return lambda: list(visible[skip : skip + size + 1])

            bench.sql(f"{listing.key} keyset sql first", keyset(None))
            bench.sql(f"{listing.key} keyset sql deepest", keyset(before))
            if branches is not None and len(branches) > 1:
                # What the page ran before it read a scope as branches: one OR.
                bench.sql(f"{listing.key} or sql first", keyset(None, visible, None))
                bench.sql(f"{listing.key} or sql deepest", keyset(before, visible, None))
            bench.sql(f"{listing.key} offset sql first", offset(0))
            bench.sql(f"{listing.key} offset sql deepest", offset(len(ids) - listing.size))

        # SQL queries per page at size 10 and 100: counted, not timed.
        counts = {}
        for listing in listings:
            client = bench.clients[listing.database][listing.who]
            query = f"{listing.query}&" if listing.query else ""
            with bench.on(listing.database):
                client.get(f"{listing.path}?{query}size=10")  # warm-up (session, permissions)
                for size in (10, 100):
                    with CaptureQueriesContext(connection) as queries:
                        page = client.get(f"{listing.path}?{query}size={size}")
                    shown = len(listing.rows.findall(page.content.decode()))
                    if page.status_code != 200 or shown != size:
                        raise RuntimeError(f"{listing.key} at size {size}: {shown} rows shown")
                    counts[listing.key, size] = len(queries)

        print(f"\nMeasuring {len(bench.items)} variants, {rounds} rounds ...", flush=True)
        measuring = time.monotonic()
        bench.measure(rounds)
        measured = time.monotonic() - measuring

    audit_rows, request_count, seeded = bench.seeding
    print(
        f"\nList pages at scale: {audit_rows:,} audit rows and {request_count:,} requests "
        f"(seeded in {seeded:.0f} s), medians of {len(next(iter(bench.items.values())).samples)}"
        f" rounds ({measured:.0f} s of measuring); times in ms.\n"
        "'deepest' is the last full page, reached by keyset `before`; OFFSET runs the same "
        "query skipping to the same depth (the SQL alone).\n"
    )
    for listing in listings:
        if listing.database != "big":
            continue
        seen, _, skip = depth[listing.key]
        key = listing.key
        label = f"{listing.label} ({seen:,} rows): whole page"
        bench.deepest_line(label, f"{key} first", f"{key} deepest")
        label = "    keyset, the page's SQL"
        bench.line(label, f"{key} keyset sql first", f"{key} keyset sql deepest")
        if f"{key} or sql first" in bench.items:
            label = "    keyset over one OR of the scope (before)"
            bench.line(label, f"{key} or sql first", f"{key} or sql deepest")
        label = f"    OFFSET {skip:,}, the same SQL (baseline)"
        bench.line(label, f"{key} offset sql first", f"{key} offset sql deepest")
    bench.print_table(("first", "deepest"))
    print()
    for which in ("first", "deepest"):
        if f"requests-mine-small {which}" not in bench.items:
            continue
        bench.same_line(
            f"Requester's own list ({bench.own:,} requests), {which} page: among "
            f"{request_count:,} / among {bench.own:,}",
            f"requests-mine-small {which}",
            f"requests-mine {which}",
        )
    bench.print_table((f"among {bench.own:,}", f"among {request_count:,}"))
    print()
    query_lines = []
    for listing in listings:
        small, large = counts[listing.key, 10], counts[listing.key, 100]
        bench.failed += small != large
        where = "" if listing.database == "big" else f" (among {bench.own:,})"
        query_lines.append((f"{listing.label}{where}", small, large, verdict(small == large)))
    width = max(len(line[0]) for line in query_lines)
    print(f"{'SQL queries per page'.ljust(width)}  size 10  size 100  target")
    for label, small, large, judged in query_lines:
        print(f"{label.ljust(width)}  {small:>7}  {large:>8}  same    {judged}")
    print(
        f"\nDone in {time.monotonic() - started:.0f} s; {bench.failed} line(s) missed the target."
    )
    # Like every part: the table says PASS or FAIL; the exit status says the run worked.
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--scale", type=float, default=1.0,
        help="fraction of 1,000,000 audit rows and 100,000 requests (default 1)",
    )  # fmt: skip
    size.add_argument("--quick", action="store_true", help="a smoke run: --scale 0.02")
    parser.add_argument("--rounds", type=int, default=15, help="rounds of measurements")
    args = parser.parse_args()
    scale = 0.02 if args.quick else args.scale
    if not 0.001 <= scale <= 10 or args.rounds < 1:
        parser.error("--scale takes 0.001 to 10, --rounds 1 or more")
    return run(scale, args.rounds)


if __name__ == "__main__":
    sys.exit(main())
