"""Writing audit events. Callers run these inside the transaction of the change they record."""

import re
import uuid
from typing import Any, Protocol

from django.contrib.auth.models import AbstractBaseUser

from apps.audit.models import AuditEvent

WORKER = "worker"
MESSAGE_LIMIT = 2000
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]+")


class AuditedRequest(Protocol):
    """What the audit log needs to know about a provisioning request."""

    code: str
    target: str
    domain: str
    ticket: str
    correlation_id: uuid.UUID


def sanitise_message(message: str) -> str:
    """The message as received, minus control characters (log forging), capped in length."""
    cleaned = _CONTROL_CHARACTERS.sub(" ", message).strip()
    if len(cleaned) > MESSAGE_LIMIT:
        cleaned = cleaned[: MESSAGE_LIMIT - 1] + "…"
    return cleaned


def audit_record(
    *,
    action: str,
    actor: AbstractBaseUser | None = None,
    actor_label: str | None = None,
    ip: str | None = None,
    request: AuditedRequest | None = None,
    target: str = "",
    domain: str = "",
    outcome: str = AuditEvent.Outcome.INFO,
    message: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event. Never pass a password or a cookie in `message` or `details`."""
    if actor_label is None:
        actor_label = actor.get_username() if actor is not None else WORKER
    return AuditEvent.objects.create(
        actor=actor,
        actor_label=actor_label,
        actor_ip=ip or None,
        action=action,
        outcome=outcome,
        target=request.target if request is not None else target,
        domain=request.domain if request is not None else domain,
        request_code=request.code if request is not None else "",
        ticket=request.ticket if request is not None else "",
        correlation_id=request.correlation_id if request is not None else None,
        message=sanitise_message(message),
        details=details or {},
    )
