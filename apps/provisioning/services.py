"""The request workflow: submit, approve, reject, cancel, retry, comment.

Each function checks the actor's scope, then changes the state with a conditional UPDATE
guarded by the current state, and writes the audit row in the same transaction. Side effects
(publishing the execution task) run only after commit. A refused action raises
ApplicationError and leaves an audit row saying who tried what.
Execution by the worker is in `execution.py`.
"""

from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from apps.accounts.models import Delegation, MailDomain
from apps.accounts.selectors import holds_role, may_request_new_domain
from apps.audit.models import AuditEvent
from apps.audit.services import audit_append, audit_event, audit_record
from apps.core.encryption import seal
from apps.core.exceptions import ApplicationError
from apps.provisioning.models import ProvisioningRequest, RequestComment
from apps.provisioning.publishing import publish_execution, publish_executions_together
from apps.provisioning.selectors import (
    LARGEST_APPROVAL,
    may_comment,
    may_decide,
    requests_awaiting_decision,
)

Kind = ProvisioningRequest.Kind
Status = ProvisioningRequest.Status
Outcome = AuditEvent.Outcome


@sensitive_variables("password")
def request_submit(
    *,
    requester: AbstractBaseUser,
    kind: str,
    target: str,
    parameters: dict[str, Any],
    ticket: str,
    reason: str,
    password: str | None = None,
    ip: str | None = None,
) -> ProvisioningRequest:
    """Open a request (PENDING). `target` is a normalised domain or address."""
    domain = target if kind in (Kind.CREATE_DOMAIN, Kind.DELETE_DOMAIN) else target.split("@")[-1]
    refusal = _submission_refusal(requester, kind, domain)
    if refusal is None and (kind == Kind.CREATE_MAILBOX) != bool(password):
        refusal = "A password is needed for a new mailbox, and only for one."
    if refusal is not None:
        _record_refusal(requester, ip, "submit", refusal, target=target, domain=domain)
        raise ApplicationError(refusal)
    try:
        with transaction.atomic():
            request = ProvisioningRequest.objects.create(
                kind=kind,
                domain=domain,
                target=target,
                parameters=parameters,
                sealed_password=seal(password) if password else "",
                ticket=ticket,
                reason=reason,
                requested_by=requester,
            )
            audit_record(
                action="request.submitted",
                actor=requester,
                ip=ip,
                request=request,
                outcome=Outcome.SUCCESS,
                details={"kind": kind, "parameters": parameters},
            )
    except IntegrityError:
        message = _already_open(target)
        _record_refusal(requester, ip, "submit", message, target=target, domain=domain)
        raise ApplicationError(message) from None
    return request


def request_approve(
    *, request: ProvisioningRequest, actor: AbstractBaseUser, ip: str | None = None
) -> ProvisioningRequest:
    """PENDING -> QUEUED, then publish its execution. Nobody approves their own request."""
    _check_decision_scope(request, actor, ip, action="approve")
    if request.requested_by_id == actor.pk:
        _refuse(request, actor, ip, "approve", "Nobody can approve a request they made.")
    with transaction.atomic():
        now = timezone.now()
        approved = (
            ProvisioningRequest.objects.filter(pk=request.pk, status=Status.PENDING)
            .exclude(requested_by=actor)
            .update(**_approval(actor, now))
        )
        if approved:
            request.refresh_from_db()
            audit_record(
                action="request.approved", actor=actor, ip=ip, request=request,
                outcome=Outcome.SUCCESS,
            )  # fmt: skip
            transaction.on_commit(lambda: publish_execution(request.pk))
    if not approved:
        _refuse_for_state(request, actor, ip, "approve")
    return request


def requests_approve_together(
    *,
    actor: AbstractBaseUser,
    ticket: str,
    reviewed: Sequence[int],
    ip: str | None = None,
) -> int:
    """Approve, together, the requests of one ticket that await this approver: exactly
    `reviewed`, the ids of the ones they were shown (`selectors.awaiting_together`).

    Requests of the ticket opened since (higher ids) wait for their own review. If the set
    changed meanwhile (another approver decided one, a requester cancelled one, one older than
    the newest shown appeared), nothing is approved and the approver looks again: an approval
    covers what was reviewed, never more nor less. Each request is approved under the same rules
    and with its own audit row as if approved alone; the executions are published together.
    Returns how many were approved.
    """
    reviewed = sorted(set(reviewed))
    if not 1 <= len(reviewed) <= LARGEST_APPROVAL:
        raise ApplicationError(
            f"Between 1 and {LARGEST_APPROVAL} requests can be approved at once."
        )
    awaiting = requests_awaiting_decision(actor).filter(ticket=ticket, pk__lte=reviewed[-1])
    with transaction.atomic():
        # The rows are locked (PostgreSQL; SQLite writes one transaction at a time). The status
        # condition out here is what makes the lock count: once a row's lock is ours, PostgreSQL
        # checks it again on the row as committed, while the subquery keeps the snapshot it
        # started with, so a request decided by another transaction meanwhile drops out here.
        locked = list(
            ProvisioningRequest.objects.select_for_update()
            .filter(pk__in=awaiting.values("pk"), status=Status.PENDING)
            .order_by("pk")
        )
        found = [request.pk for request in locked]
        # The scope again, on the rows as locked: a delegation withdrawn while this waited for
        # the locks takes effect here, as it would for an approval alone.
        approvable = found == reviewed and all(
            may_decide(actor, r) for r in _one_per_domain(locked)
        )
        queued = ProvisioningRequest.objects.filter(pk__in=found, status=Status.PENDING)
        if approvable and queued.update(**_approval(actor, timezone.now())) != len(found):
            # Locked and pending, so all of them: a shortfall would be a bug. Write nothing.
            transaction.set_rollback(True)
            approvable = False
        if approvable:
            # What an audit row takes from a request (code, target, domain, ticket) is as locked.
            events = [
                audit_event(action="request.approved", actor=actor, ip=ip, request=request,
                            outcome=Outcome.SUCCESS, details={"together": len(found)})
                for request in locked
            ]  # fmt: skip
            audit_append(events)
            transaction.on_commit(lambda: publish_executions_together(found))
    if not approvable:
        message = (
            f"The requests of {ticket} awaiting your approval changed since you looked "
            f"({len(found)} now, {len(reviewed)} then): nothing was approved. Review them again."
        )
        details = {"ticket": ticket, "reviewed": len(reviewed), "found": len(found)}
        _record_refusal(actor, ip, "approve", message, details=details)
        raise ApplicationError(message)
    return len(found)


def _one_per_domain(requests: list[ProvisioningRequest]) -> list[ProvisioningRequest]:
    """One request of each (domain, new domain or not): what `may_decide` looks at."""
    return list(
        {
            (request.domain, request.kind == Kind.CREATE_DOMAIN): request for request in requests
        }.values()
    )


def _approval(actor: AbstractBaseUser, now: Any) -> dict[str, Any]:
    """The fields an approval sets, alone or together."""
    return {
        "status": Status.QUEUED, "decided_by": actor, "decided_at": now, "queued_at": now,
        "not_before": None, "updated_at": now,
    }  # fmt: skip


def request_reject(
    *,
    request: ProvisioningRequest,
    actor: AbstractBaseUser,
    reason: str,
    ip: str | None = None,
) -> ProvisioningRequest:
    """PENDING -> REJECTED with a reason for the requester."""
    reason = reason.strip()
    if not reason:
        raise ApplicationError("Say why the request is rejected: the requester will read it.")
    _check_decision_scope(request, actor, ip, action="reject")
    with transaction.atomic():
        now = timezone.now()
        rejected = ProvisioningRequest.objects.filter(pk=request.pk, status=Status.PENDING).update(
            status=Status.REJECTED,
            decided_by=actor,
            decided_at=now,
            rejection_reason=reason,
            finished_at=now,
            sealed_password="",
            updated_at=now,
        )
        if rejected:
            request.refresh_from_db()
            audit_record(
                action="request.rejected", actor=actor, ip=ip, request=request,
                outcome=Outcome.SUCCESS, message=reason,
            )  # fmt: skip
    if not rejected:
        _refuse_for_state(request, actor, ip, "reject")
    return request


def request_cancel(
    *, request: ProvisioningRequest, actor: AbstractBaseUser, ip: str | None = None
) -> ProvisioningRequest:
    """PENDING -> CANCELLED, by the requester only."""
    if request.requested_by_id != actor.pk:
        _refuse(request, actor, ip, "cancel", "Only the person who made a request can cancel it.")
    with transaction.atomic():
        now = timezone.now()
        cancelled = ProvisioningRequest.objects.filter(
            pk=request.pk, status=Status.PENDING, requested_by=actor
        ).update(status=Status.CANCELLED, finished_at=now, sealed_password="", updated_at=now)
        if cancelled:
            request.refresh_from_db()
            audit_record(
                action="request.cancelled", actor=actor, ip=ip, request=request,
                outcome=Outcome.SUCCESS,
            )  # fmt: skip
    if not cancelled:
        _refuse_for_state(request, actor, ip, "cancel")
    return request


@sensitive_variables("password")
def request_retry(
    *,
    request: ProvisioningRequest,
    actor: AbstractBaseUser,
    password: str | None = None,
    ip: str | None = None,
) -> ProvisioningRequest:
    """FAILED -> QUEUED, by an approver. A mailbox needs its password again: the old one was
    destroyed when the request failed."""
    _check_decision_scope(request, actor, ip, action="retry")
    if (request.kind == Kind.CREATE_MAILBOX) != bool(password):
        _refuse(
            request,
            actor,
            ip,
            "retry",
            "Enter a new initial password: the first one was destroyed when the request failed."
            if request.kind == Kind.CREATE_MAILBOX
            else "Only a new mailbox takes a password.",
        )
    previous_result = request.result_code
    try:
        with transaction.atomic():
            now = timezone.now()
            retried = ProvisioningRequest.objects.filter(
                pk=request.pk, status=Status.FAILED
            ).update(
                status=Status.QUEUED,
                queued_at=now,
                not_before=None,
                finished_at=None,
                attempts_before_run=F("attempts"),
                # The failure stays in the audit log; the request now awaits a new outcome.
                result_code="",
                result_message="",
                sealed_password=seal(password) if password else "",
                updated_at=now,
            )
            if retried:
                request.refresh_from_db()
                audit_record(
                    action="request.retried", actor=actor, ip=ip, request=request,
                    outcome=Outcome.SUCCESS,
                    details={"previous_result": previous_result},
                )  # fmt: skip
                transaction.on_commit(lambda: publish_execution(request.pk))
    except IntegrityError:
        _refuse(request, actor, ip, "retry", _already_open(request.target))
    if not retried:
        _refuse_for_state(request, actor, ip, "retry")
    return request


def request_comment(
    *,
    request: ProvisioningRequest,
    author: AbstractBaseUser,
    body: str,
    ip: str | None = None,
) -> RequestComment:
    body = body.strip()
    if not body:
        raise ApplicationError("A comment cannot be empty.")
    if not may_comment(author, request):
        _refuse(
            request, author, ip, "comment", "Only the requester and the domain's staff comment."
        )
    with transaction.atomic():
        comment = RequestComment.objects.create(request=request, author=author, body=body)
        audit_record(
            action="request.commented", actor=author, ip=ip, request=request,
            outcome=Outcome.SUCCESS, details={"comment_id": comment.pk},
        )  # fmt: skip
    return comment


# --- Guards ------------------------------------------------------------------------------------


def _submission_refusal(requester: AbstractBaseUser, kind: str, domain: str) -> str | None:
    """Why `requester` may not open this request, or None."""
    managed = MailDomain.objects.filter(name=domain, is_active=True).exists()
    if kind == Kind.CREATE_DOMAIN:
        if not may_request_new_domain(requester):
            return "You may not request new domains."
        if managed:
            return f"{domain} is already managed by Maildesk."
        return None
    if not managed:
        return f"{domain} is not a domain Maildesk manages."
    if not holds_role(requester, Delegation.Role.REQUESTER, domain):
        return f"You may not open requests for {domain}."
    return None


def _check_decision_scope(
    request: ProvisioningRequest, actor: AbstractBaseUser, ip: str | None, *, action: str
) -> None:
    if not may_decide(actor, request):
        _refuse(request, actor, ip, action, f"You are not an approver for {request.domain}.")


def _refuse_for_state(
    request: ProvisioningRequest, actor: AbstractBaseUser, ip: str | None, action: str
) -> None:
    request.refresh_from_db()
    _refuse(
        request,
        actor,
        ip,
        action,
        f"{request.code} cannot be {_PAST[action]}: it is {request.get_status_display().lower()}.",
    )


def _refuse(
    request: ProvisioningRequest,
    actor: AbstractBaseUser,
    ip: str | None,
    action: str,
    message: str,
) -> None:
    """Record a refused action (in its own transaction, so it stays), then refuse it."""
    _record_refusal(actor, ip, action, message, request=request)
    raise ApplicationError(message)


def _record_refusal(
    actor: AbstractBaseUser,
    ip: str | None,
    action: str,
    message: str,
    *,
    request: ProvisioningRequest | None = None,
    target: str = "",
    domain: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    with transaction.atomic():
        audit_record(
            action=f"request.{action}_refused", actor=actor, ip=ip, request=request,
            target=target, domain=domain, outcome=Outcome.REFUSED, message=message,
            details=details,
        )  # fmt: skip


_PAST = {
    "approve": "approved",
    "reject": "rejected",
    "cancel": "cancelled",
    "retry": "retried",
}


def _already_open(target: str) -> str:
    existing = (
        ProvisioningRequest.objects.filter(
            target=target, status__in=ProvisioningRequest.OPEN_STATUSES
        )
        .values_list("code", flat=True)
        .first()
    )
    return f"{existing or 'Another request'} for {target} is still open: wait for it to finish."
