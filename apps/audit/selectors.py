"""Reads of the audit log, through the reader's scope."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet

from apps.accounts.selectors import domain_branches, is_auditor
from apps.audit.models import AuditEvent
from apps.core.pagination import Branch, within
from apps.provisioning.models import ProvisioningRequest


def event_scope(user: AbstractBaseUser, *, per_domain: bool = False) -> list[Branch] | None:
    """What the user may read, as branches of a union; None for everything.

    Auditors and portal admins read everything; others read their own actions, the events of
    the domains they hold a role in, and those of the requests they made. `per_domain` makes
    one branch of each domain (their names are read now): a list page walks each one's
    (domain, id) index.
    """
    if user.is_superuser or is_auditor(user):
        return None
    domains = domain_branches(user, per_domain=per_domain)
    own_requests = ProvisioningRequest.objects.filter(requested_by=user).values("code")
    return [
        Branch(Q(actor=user)),
        *domains,
        # No index gives the events of many request codes in id order: they are gathered
        # (by id range, or through the (request_code, id) index), newer than what the other
        # branches found for the page.
        Branch(Q(request_code__in=own_requests), walk=False),
    ]


def events_visible_to(user: AbstractBaseUser) -> QuerySet[AuditEvent]:
    """The events of `event_scope` as one queryset (the export, lookups)."""
    return within(AuditEvent.objects.all(), event_scope(user))
