"""Reads of requests, always through the user's scope: outside it a request does not exist."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404

from apps.accounts.models import Delegation
from apps.accounts.selectors import (
    domain_branches,
    domains_for,
    holds_role,
    may_approve_new_domain,
)
from apps.core.pagination import Branch, within
from apps.provisioning.models import ProvisioningRequest

Kind = ProvisioningRequest.Kind
Status = ProvisioningRequest.Status


def request_scope(
    user: AbstractBaseUser, *, per_domain: bool = False, only_own: bool = False
) -> list[Branch] | None:
    """The requests the user may read, as branches of a union; None for all of them.

    Their own, those of domains they hold a role in, and new domains if they approve those.
    Portal admins read everything. Auditors read the whole audit log (every event of every
    request, see apps.audit), not the request pages: those belong to the people working the
    requests. `per_domain` makes one branch of each domain (their names are read now): a list
    page walks each one's (domain, id) index. `only_own` narrows it to the user's own requests.
    """
    if only_own:
        # Always within the scope (its first branch): with it, the other branches add nothing.
        return [Branch(Q(requested_by=user))]
    if user.is_superuser:
        return None
    branches = [Branch(Q(requested_by=user)), *domain_branches(user, per_domain=per_domain)]
    if may_approve_new_domain(user):
        branches.append(Branch(Q(kind=Kind.CREATE_DOMAIN)))
    return branches


def requests_visible_to(user: AbstractBaseUser) -> QuerySet[ProvisioningRequest]:
    """The requests of `request_scope` as one queryset."""
    requests = ProvisioningRequest.objects.select_related("requested_by", "decided_by")
    return within(requests, request_scope(user))


def request_get_for_user(*, user: AbstractBaseUser, code: str) -> ProvisioningRequest:
    """The request with this code if the user may read it; otherwise 404."""
    return get_object_or_404(requests_visible_to(user), code=code)


def requests_awaiting_decision(user: AbstractBaseUser) -> QuerySet[ProvisioningRequest]:
    """Pending requests this user may approve: those `may_decide` allows, not their own.

    The same rules as `may_decide`, as a query: a new domain needs the new-domain approval
    grant (an approver of a domain's name is not one); anything else an approver's delegation
    in a managed (active) domain.
    """
    approver_of = Q(domain__in=domains_for(user, Delegation.Role.APPROVER).values("name"))
    return (
        ProvisioningRequest.objects.select_related("requested_by")
        .filter(status=Status.PENDING)
        .filter((approver_of & ~Q(kind=Kind.CREATE_DOMAIN)) | _new_domains_scope(user))
        .exclude(requested_by=user)
    )


# The most requests one approval together takes: one transaction, one audit INSERT.
LARGEST_APPROVAL = 1000


def awaiting_together(user: AbstractBaseUser, ticket: str) -> list[ProvisioningRequest]:
    """The requests of a ticket awaiting this user's approval, oldest first, as many as one
    approval together takes (apps.provisioning.services.requests_approve_together)."""
    return list(
        requests_awaiting_decision(user).filter(ticket=ticket).order_by("pk")[:LARGEST_APPROVAL]
    )


def may_decide(user: AbstractBaseUser, request: ProvisioningRequest) -> bool:
    """May approve, reject or retry this request (their own included, except approving)."""
    if request.kind == Kind.CREATE_DOMAIN:
        return may_approve_new_domain(user)
    return holds_role(user, Delegation.Role.APPROVER, request.domain)


def may_comment(user: AbstractBaseUser, request: ProvisioningRequest) -> bool:
    """The requester and anyone holding a role for the request's domain; not a read-only
    auditor."""
    return (
        request.requested_by_id == user.pk
        or may_decide(user, request)
        or holds_role(user, Delegation.Role.REQUESTER, request.domain)
    )


def _new_domains_scope(user: AbstractBaseUser) -> Q:
    # Q(pk__in=[]) matches nothing: a user without the grant sees no one else's new domains.
    return Q(kind=Kind.CREATE_DOMAIN) if may_approve_new_domain(user) else Q(pk__in=[])
