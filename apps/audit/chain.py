"""The audit log's hash chain: each row seals its content and the previous row's seal.

seal(row) = HMAC-SHA256(key, previous seal + the row's content). Editing a row breaks its own
seal; deleting or inserting a row breaks the link of the row after it; and without the key
(MAILDESK_AUDIT_KEY, kept outside the database) nobody can forge new seals to cover it up.
`manage.py verify_audit` walks the chain and names the first broken row.
"""

import hashlib
import hmac
import json
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
# Any constant: serialises the writers of the chain on PostgreSQL (SQLite writers take the
# database lock anyway).
_CHAIN_LOCK = 727_463_112


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


def lock_and_read_head() -> str:
    """Take the chain for this transaction and return the newest seal."""
    from apps.audit.models import AuditEvent

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK])
    head = AuditEvent.objects.order_by("-id").values_list("seal", flat=True).first()
    return head or GENESIS


@dataclass
class Break:
    row_id: int
    description: str


def verify(rows: Iterator[dict[str, Any]]) -> tuple[int, str, Break | None]:
    """Walk rows in id order: (rows checked, the head seal, the first break or None)."""
    expected_previous, previous_id, count = GENESIS, None, 0
    for row in rows:
        count += 1
        where = f"row {row['id']} ({row['occurred_at']:%Y-%m-%d %H:%M:%S}, {row['action']})"
        if row["previous_seal"] != expected_previous:
            after = f"row {previous_id}" if previous_id else "the start of the log"
            return (
                count,
                expected_previous,
                Break(
                    row["id"],
                    f"{where} does not follow {after}: a row was deleted or inserted between them.",
                ),
            )
        if not hmac.compare_digest(seal(row["previous_seal"], row), row["seal"]):
            return (
                count,
                expected_previous,
                Break(row["id"], f"{where} was changed: its content does not match its seal."),
            )
        expected_previous, previous_id = row["seal"], row["id"]
    return count, expected_previous, None
