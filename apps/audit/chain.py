"""The audit log's hash chains: each row seals its content and the previous row's seal.

seal(row) = HMAC-SHA256(key, previous seal + the row's content). Editing a row breaks its own
seal; deleting or inserting a row breaks the link of the row after it; and without the key
(MAILDESK_AUDIT_KEY, kept outside the database) nobody can forge new seals to cover it up.
`manage.py verify_audit` walks the chains and names the first broken row.

There are CHAINS chains, not one: every writer of a chain waits for the one before it to
commit, and with a single chain all the worker threads of all the hosts queued there (it was
a third of a worker thread's time at 8 threads). Each thread writes to one chain only, so a
transaction never holds two chain locks (two writers could otherwise deadlock).
"""

import hashlib
import hmac
import itertools
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection

GENESIS = "0" * 64
# The fields a seal covers, in this order; the id is not one of them (it is the chain's order).
SEALED_FIELDS = (
    "occurred_at", "actor_id", "actor_label", "actor_ip", "action", "outcome", "target",
    "domain", "request_code", "ticket", "message", "correlation_id", "details",
)  # fmt: skip
CHAINS = 16
# Any constant (with the chain's number): serialises the writers of one chain on PostgreSQL.
# SQLite writers take the database lock anyway.
_CHAIN_LOCK = 727_463_112
_threads_started = itertools.count()
_this_thread = threading.local()


def _key() -> bytes:
    if settings.MAILDESK_AUDIT_KEY:
        return settings.MAILDESK_AUDIT_KEY.encode()
    # Development default; production sets MAILDESK_AUDIT_KEY (check --deploy says so).
    return hashlib.sha256(b"maildesk-audit:" + settings.SECRET_KEY.encode()).digest()


def seal(previous: str, content: dict[str, Any]) -> str:
    canonical = json.dumps(
        [previous, *(_plain(content[name]) for name in SEALED_FIELDS)],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hmac.new(_key(), canonical.encode(), hashlib.sha256).hexdigest()


def _plain(value: Any) -> Any:
    """The value as the database gives it back, whatever it was when written."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if value is None or isinstance(value, int | str | bool | dict | list | float):
        return value
    return str(value)  # UUID


def chain_of_this_thread() -> int:
    """The chain this thread writes to: threads of a process take turns over the chains.

    The process id is read here, not at import: forked worker processes inherit the parent's
    module, and would otherwise all start on the same chain. Processes started one after the
    other have consecutive ids: times 7 (coprime with CHAINS) puts their threads apart.
    """
    number = getattr(_this_thread, "chain", None)
    if number is None:
        number = _this_thread.chain = (7 * os.getpid() + next(_threads_started)) % CHAINS
    return number


def take_next_chain() -> None:
    """Move this thread on to the next chain. For a thread that writes for many (a worker
    process's writer): the writers of several processes then meet on one chain only now and
    then, never for good."""
    _this_thread.chain = (chain_of_this_thread() + 1) % CHAINS


def lock_and_read_head(number: int) -> str:
    """Take chain `number` for this transaction and return its newest seal.

    The lock is held until the transaction commits, so the work done while holding it is kept
    small: plain SQL, and on PostgreSQL one round trip (the function of migration 0004). This
    needs READ COMMITTED (Django's default): the head must be read after the lock is taken,
    from a fresh snapshot, which REPEATABLE READ would not give.
    """
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT audit_chain_head(%s, %s)", [_CHAIN_LOCK, number])
        else:
            cursor.execute(
                "SELECT seal FROM audit_auditevent WHERE chain = %s ORDER BY id DESC LIMIT 1",
                [number],
            )
        head = cursor.fetchone()
    return (head[0] if head else None) or GENESIS


@dataclass
class Break:
    row_id: int
    description: str


@dataclass(frozen=True)
class End:
    """The newest row of one chain: its id and its seal."""

    id: int
    seal: str


def verify(rows: Iterator[dict[str, Any]]) -> tuple[int, dict[int, End], Break | None]:
    """Walk rows in id order: (rows checked, each chain's end, the first break or None)."""
    ends: dict[int, End] = {}
    count = 0
    for row in rows:
        count += 1
        number = row["chain"]
        end = ends.get(number)
        expected_previous = end.seal if end else GENESIS
        where = f"row {row['id']} ({row['occurred_at']:%Y-%m-%d %H:%M:%S}, {row['action']})"
        if row["previous_seal"] != expected_previous:
            after = f"row {end.id}" if end else "the start of its chain"
            return (
                count,
                ends,
                Break(
                    row["id"],
                    f"{where} does not follow {after}: a row was deleted or inserted between them.",
                ),
            )
        if not hmac.compare_digest(seal(row["previous_seal"], row), row["seal"]):
            return (
                count,
                ends,
                Break(row["id"], f"{where} was changed: its content does not match its seal."),
            )
        ends[number] = End(row["id"], row["seal"])
    return count, ends, None


# An anchor: each chain's newest row id (`<chain>.<id>`, comma-separated), then a digest of
# their seals. Each chain is pinned by its own end: across chains, a lower id can commit after
# a higher one (writers of different chains do not wait for each other), so "every row up to
# id N" is not a fixed set; within a chain, ids follow commit order (the chain's lock is held
# from before the insert until the commit).
ANCHOR = re.compile(r"((?:\d+\.\d+)(?:,\d+\.\d+)*):([0-9a-f]{64})")


def anchor(ends: dict[int, End]) -> str:
    """One string that pins the end of every chain; "" for an empty log."""
    if not ends:
        return ""
    pins = ",".join(f"{number}.{ends[number].id}" for number in sorted(ends))
    return f"{pins}:{_digest(ends)}"


def parse_anchor(text: str) -> dict[int, int] | None:
    """The chain -> row id pins of an anchor, or None if it is not one."""
    match = ANCHOR.fullmatch(text.strip())
    if match is None:
        return None
    pins = {}
    for pin in match.group(1).split(","):
        number, row_id = pin.split(".")
        pins[int(number)] = int(row_id)
    return pins


def anchor_holds(text: str, found: dict[int, End]) -> bool:
    """Whether `found` (the pinned rows as they are now) gives the anchor back."""
    return hmac.compare_digest(anchor(found), text.strip())


def _digest(ends: dict[int, End]) -> str:
    return hashlib.sha256(
        "".join(
            f"{number}={ends[number].id}={ends[number].seal};" for number in sorted(ends)
        ).encode()
    ).hexdigest()
