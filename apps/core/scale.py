"""Synthetic data at scale, for measuring the list pages (`manage.py seed_scale` writes it).

Requests spread over 20 domains and some 60 people, and the audit rows telling their stories
(sealed onto the hash chains exactly as `audit_record` seals them), plus sign-ins. A few people
see only a small part: a requester owning some of the requests who joined halfway, an approver
of two small domains, and a newcomer approving in a domain that exists only for the newest
fifth of the requests.
"""

import random
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from apps.accounts.models import Delegation, MailDomain
from apps.audit import chain
from apps.audit.models import AuditEvent
from apps.provisioning.models import ProvisioningRequest

Kind = ProvisioningRequest.Kind
Status = ProvisioningRequest.Status
Outcome = AuditEvent.Outcome
Role = Delegation.Role

PREFIX = "scale-"
ADMIN, AUDITOR, APPROVER, REQUESTER, NEWCOMER = (
    f"{PREFIX}{name}" for name in ("admin", "auditor", "approver", "requester", "newcomer")
)
MARKER_ACTION = "seed.scale"
DOMAIN_COUNT = 20
AGENT_COUNT = 40
# Domains of the scoped people: the requester's is a busy one, the approver's two are small
# (about 3 % and 1 % of the requests), and the last one exists only for the newest fifth of the
# requests: the newcomer approves there alone, so that all they see is recent.
REQUESTER_DOMAIN, APPROVER_DOMAINS, LATE_DOMAIN = 3, (9, 19), 19
LATE = 0.8
# When people joined (a fraction of the time span); they sign in only after that.
JOINED = {REQUESTER: 0.5, NEWCOMER: LATE}
SPAN = timedelta(days=365)
# The share of audit rows about requests; the rest are sign-ins and sign-outs.
REQUEST_EVENT_SHARE = 0.9


def domain_name(number: int) -> str:
    return f"{PREFIX}{number:02d}.example"


@dataclass
class _Request:
    code: str
    kind: str
    status: str
    domain: str
    target: str
    ticket: str
    correlation_id: uuid.UUID
    requester: tuple[int, str]
    decider: tuple[int, str] | None
    created_at: datetime


@dataclass
class Plan:
    """The synthetic data, decided up front (requests) or generated on the way (audit rows)."""

    rng: random.Random
    request_count: int
    own_count: int
    audit_count: int
    users: dict[str, tuple[int, str]] = field(default_factory=dict)
    requests: list[_Request] = field(default_factory=list)
    heads: dict[int, str] = field(default_factory=dict)
    codes: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.end = timezone.now() - timedelta(minutes=1)
        self.start = self.end - SPAN

    def take_chains(self) -> None:
        """Lock every chain until the commit, and read its head: writers of the portal wait,
        so that no row of theirs lands between ours on a chain. (They lock one chain at a time,
        and this takes them in order: no deadlock.)"""
        if self.audit_count:
            for number in range(chain.CHAINS):
                self.heads[number] = chain.lock_and_read_head(number)
        self.codes = set(ProvisioningRequest.objects.values_list("code", flat=True))

    def make_people(self) -> None:
        domains = {}
        for number in range(DOMAIN_COUNT):
            domains[number], _ = MailDomain.objects.get_or_create(name=domain_name(number))
        self._person(ADMIN, superuser=True)
        self._person(AUDITOR, groups=["Auditors"])
        self._person(
            REQUESTER,
            roles=[(domains[REQUESTER_DOMAIN], Role.REQUESTER)],
            groups=["New-domain requesters"],
        )
        self._person(
            APPROVER,
            roles=[(domains[number], Role.APPROVER) for number in APPROVER_DOMAINS],
            groups=["New-domain approvers"],
        )
        self._person(NEWCOMER, roles=[(domains[LATE_DOMAIN], Role.APPROVER)])
        # Each agent requests in two domains; each domain has a lead who approves there.
        self.agents_of: dict[int, list[str]] = {number: [] for number in range(DOMAIN_COUNT)}
        for agent in range(AGENT_COUNT):
            name = f"{PREFIX}agent-{agent + 1:02d}"
            numbers = sorted({agent % DOMAIN_COUNT, (agent * 7 + 3) % DOMAIN_COUNT})
            self._person(name, roles=[(domains[number], Role.REQUESTER) for number in numbers])
            for number in numbers:
                self.agents_of[number].append(name)
        for number in range(DOMAIN_COUNT):
            self._person(f"{PREFIX}lead-{number:02d}", roles=[(domains[number], Role.APPROVER)])

    def _person(
        self,
        username: str,
        *,
        superuser: bool = False,
        roles: Iterable[tuple[MailDomain, str]] = (),
        groups: Iterable[str] = (),
    ) -> None:
        users = get_user_model().objects
        user = users.filter(username=username).first()
        if user is None:
            # No password: these people exist to be measured, never to sign in.
            user = users.create_user(username, is_superuser=superuser, is_staff=superuser)
        for domain, role in roles:
            Delegation.objects.get_or_create(user=user, domain=domain, role=role)
        user.groups.add(*Group.objects.filter(name__in=list(groups)))
        self.users[username] = (user.pk, username)

    # --- Requests ---------------------------------------------------------------------------

    def _time(self, fraction: float) -> datetime:
        return self.start + SPAN * fraction

    def request_rows(self) -> Iterator[dict[str, Any]]:
        count, rng = self.request_count, self.rng
        # The requester joined halfway: their requests are among the newer half (or all).
        window = max(self.own_count, round(count * (1 - JOINED[REQUESTER])))
        own = set(rng.sample(range(count - window, count), self.own_count))
        weights = [1 / (number + 1) for number in range(DOMAIN_COUNT)]
        open_from = count - max(1, count // 500)
        for index in range(count):
            fraction = index / count
            numbers = [n for n in range(DOMAIN_COUNT) if n != LATE_DOMAIN or fraction >= LATE]
            number = rng.choices(numbers, [weights[n] for n in numbers])[0]
            domain = domain_name(number)
            requester = REQUESTER if index in own else rng.choice(self.agents_of[number])
            kind = rng.choices(list(Kind), [3, 1, 84, 12])[0]
            if kind == Kind.DELETE_DOMAIN and index >= open_from:
                kind = Kind.DELETE_MAILBOX  # one open request per target: keep them distinct
            if kind == Kind.CREATE_DOMAIN:
                target = domain = f"new-{index}.{PREFIX}new.example"
            elif kind == Kind.DELETE_DOMAIN:
                # Never carried out: keep the domains; it ends rejected or cancelled.
                target = domain
            else:
                target = f"user{index}@{domain}"
            if index >= open_from:
                status = rng.choice([Status.PENDING, Status.PENDING, Status.QUEUED])
            elif kind == Kind.DELETE_DOMAIN:
                status = rng.choice([Status.REJECTED, Status.CANCELLED])
            else:
                status = rng.choices(
                    [Status.SUCCEEDED, Status.FAILED, Status.REJECTED, Status.CANCELLED],
                    [88, 5, 4, 3],
                )[0]
            if status in (Status.PENDING, Status.CANCELLED):
                decider = None
            elif kind == Kind.CREATE_DOMAIN or number in APPROVER_DOMAINS:
                decider = APPROVER
            else:
                decider = f"{PREFIX}lead-{number:02d}"
            code = _new_code(rng, self.codes)
            created = self._time(fraction)
            request = _Request(
                code=code, kind=kind, status=status, domain=domain, target=target,
                ticket=f"HD-{index + 1}", correlation_id=uuid.UUID(int=rng.getrandbits(128)),
                requester=self.users[requester],
                decider=self.users[decider] if decider else None, created_at=created,
            )  # fmt: skip
            self.requests.append(request)
            yield _request_row(request)

    # --- Audit rows -------------------------------------------------------------------------

    def audit_rows(self) -> Iterator[dict[str, Any]]:
        """Every row in id order, sealed onto the chains (`take_chains` first)."""
        if not self.audit_count:
            return
        heads, rng = self.heads, self.rng
        for row in self._events():
            number = rng.randrange(chain.CHAINS)
            row["chain"], row["previous_seal"] = number, heads[number]
            row["seal"] = heads[number] = chain.seal(heads[number], row)
            yield row

    def _events(self) -> Iterator[dict[str, Any]]:
        yield _event(
            self.end - SPAN - timedelta(minutes=1),
            None,
            action=MARKER_ACTION,
            actor_label="seed_scale",
            message="Synthetic rows for measurements, written by manage.py seed_scale.",
            details={"audit_rows": self.audit_count, "requests": self.request_count},
        )
        budget = self.audit_count - 1
        count = len(self.requests)
        about_requests = round(budget * REQUEST_EVENT_SHARE) if count else 0
        sign_ins = budget - about_requests
        if not count:
            yield from self._sign_ins(sign_ins, 0.0, SPAN / max(sign_ins, 1))
            return
        for index, request in enumerate(self.requests):
            # Spread both kinds of rows evenly over the requests (exact totals).
            events = (index + 1) * about_requests // count - index * about_requests // count
            yield from self._request_events(request, events)
            others = (index + 1) * sign_ins // count - index * sign_ins // count
            yield from self._sign_ins(others, (index + 0.5) / count, timedelta(0))

    def _sign_ins(self, count: int, fraction: float, step: timedelta) -> Iterator[dict[str, Any]]:
        """`count` sign-ins or sign-outs from `fraction` of the span on, by people there then."""
        at = self._time(fraction)
        present = [person for name, person in self.users.items()
                   if JOINED.get(name, 0.0) <= fraction]  # fmt: skip
        for number in range(count):
            person = self.rng.choice(present)
            action = self.rng.choices(["auth.login", "auth.logout"], [60, 40])[0]
            when = at + step * number + timedelta(seconds=number)
            yield _event(when, person, action=action, ip=self._ip(), outcome=Outcome.INFO)

    def _ip(self) -> str:
        return f"192.0.2.{self.rng.randrange(1, 255)}"

    def _request_events(self, request: _Request, count: int) -> Iterator[dict[str, Any]]:
        for number, action in enumerate(_lifecycle(request.status, count)):
            when = request.created_at + timedelta(seconds=30 * number)
            worker = action.startswith("api.")
            person = None if worker else request.requester
            if action in ("request.approved", "request.rejected"):
                person = request.decider
            outcome, message, details = {
                "request.submitted": (Outcome.SUCCESS, "", {"kind": request.kind}),
                "request.approved": (Outcome.SUCCESS, "", {}),
                "request.rejected": (Outcome.SUCCESS, "Not needed any more.", {}),
                "request.cancelled": (Outcome.SUCCESS, "", {}),
                "request.commented": (Outcome.SUCCESS, "", {}),
                "api.call": (Outcome.INFO, "", {"attempt": 1}),
                "api.retry_scheduled": (Outcome.FAILURE, "TIMEOUT", {"attempt": 1}),
                "api.succeeded": (Outcome.SUCCESS, "", {"attempt": 1}),
                "api.failed": (Outcome.FAILURE, "ALREADY_EXISTS", {"attempt": 1}),
            }[action]
            yield _event(
                when, person, action=action, ip=None if worker else self._ip(),
                outcome=outcome, message=message, details=details, request=request,
            )  # fmt: skip


def _lifecycle(status: str, count: int) -> list[str]:
    """`count` actions telling a request's story up to `status` (cut short if count is small)."""
    if status == Status.PENDING:
        story = ["request.submitted"]
    elif status in (Status.REJECTED, Status.CANCELLED):
        story = ["request.submitted", f"request.{status}"]
    elif status == Status.QUEUED:
        story = ["request.submitted", "request.approved"]
    else:
        final = "api.succeeded" if status == Status.SUCCEEDED else "api.failed"
        story = ["request.submitted", "request.approved", "api.call", final]
    if count <= len(story):
        return story[:count]
    # The rest: comments while it waits, or retried calls once approved.
    extra = count - len(story)
    if status in (Status.SUCCEEDED, Status.FAILED):
        retries = ["api.call", "api.retry_scheduled"] * (extra // 2)
        comments = ["request.commented"] * (extra % 2)
        return story[:1] + comments + story[1:2] + retries + story[2:]
    return story[:1] + ["request.commented"] * extra + story[1:]


def _event(
    when: datetime,
    person: tuple[int, str] | None,
    *,
    action: str,
    actor_label: str | None = None,
    ip: str | None = None,
    outcome: str = Outcome.INFO,
    message: str = "",
    details: dict[str, Any] | None = None,
    request: _Request | None = None,
) -> dict[str, Any]:
    """A row as `audit_record` writes it (the domain of a request's event is the request's)."""
    return {
        "occurred_at": when,
        "actor_id": person[0] if person else None,
        "actor_label": actor_label or (person[1] if person else "worker"),
        "actor_ip": ip,
        "action": action,
        "outcome": outcome,
        "target": request.target if request else "",
        "domain": request.domain if request else "",
        "request_code": request.code if request else "",
        "ticket": request.ticket if request else "",
        "message": message,
        "correlation_id": request.correlation_id if request else None,
        "details": details or {},
    }


def _request_row(request: _Request) -> dict[str, Any]:
    decided = request.created_at + timedelta(minutes=10)
    approved = request.status in (Status.QUEUED, Status.SUCCEEDED, Status.FAILED)
    finished = None
    if request.status in ProvisioningRequest.TERMINAL_STATUSES:
        finished = decided + timedelta(minutes=2) if approved else decided
    failed = request.status == Status.FAILED
    if request.kind == Kind.CREATE_DOMAIN:
        parameters = {"name": "", "quota_mb": 0, "language": "en_US"}
    elif request.kind == Kind.CREATE_MAILBOX:
        parameters = {"name": "", "language": "", "quota_mb": None}
    else:
        parameters = {}
    return {
        "created_at": request.created_at,
        "updated_at": finished or (decided if request.decider else request.created_at),
        "code": request.code,
        "kind": request.kind,
        "status": request.status,
        "domain": request.domain,
        "target": request.target,
        "parameters": parameters,
        "sealed_password": "",
        "ticket": request.ticket,
        "reason": "Synthetic request (manage.py seed_scale).",
        "requested_by_id": request.requester[0],
        "decided_by_id": request.decider[0] if request.decider else None,
        "decided_at": decided if request.decider else None,
        "rejection_reason": "Not needed any more." if request.status == Status.REJECTED else "",
        "attempts": 1 if request.status in (Status.SUCCEEDED, Status.FAILED) else 0,
        "attempts_before_run": 0,
        "queued_at": decided if approved else None,
        "not_before": None,
        "lease_expires_at": None,
        "outcome_uncertain": False,
        "needs_operator": False,
        "operator_wait_since": None,
        "finished_at": finished,
        "result_code": "ALREADY_EXISTS" if failed else "",
        "result_message": "The mailbox exists already." if failed else "",
        "correlation_id": request.correlation_id,
    }


_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def _new_code(rng: random.Random, taken: set[str]) -> str:
    while True:
        code = "REQ-" + "".join(rng.choices(_CODE_ALPHABET, k=8))
        if code not in taken:
            taken.add(code)
            return code
