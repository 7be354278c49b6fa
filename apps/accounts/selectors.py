"""Who may do what, where. Every scope decision of the portal starts here.

Portal admins (superusers) hold every role everywhere, as Django's permissions give them;
that never lets anyone approve their own request (see provisioning.services).
"""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet

from apps.accounts.models import Delegation, MailDomain
from apps.core.pagination import Branch

# A list page walks each domain's (domain, id) index up to this many domains; past it, one
# branch takes them all (SQLite refuses a UNION of over 500 parts, and planning a union grows
# with its parts, while someone with that many domains sees most of the table anyway).
MAX_DOMAIN_BRANCHES = 50

REQUEST_NEW_DOMAIN = "accounts.request_new_domain"
APPROVE_NEW_DOMAIN = "accounts.approve_new_domain"
VIEW_ALL_EVENTS = "audit.view_all_events"


def domains_for(user: AbstractBaseUser, role: str) -> QuerySet[MailDomain]:
    """Active domains where `user` holds `role` (a Delegation.Role)."""
    domains = MailDomain.objects.filter(is_active=True)
    if user.is_superuser:
        return domains
    return domains.filter(delegations__user=user, delegations__role=role).distinct()


def domain_names_for(user: AbstractBaseUser, role: str | None = None) -> QuerySet:
    """Names of the domains (active or not) where `user` holds `role`, or any role: a subquery."""
    delegations = Delegation.objects.filter(user=user)
    if role is not None:
        delegations = delegations.filter(role=role)
    return delegations.values("domain__name")


def domain_branches(user: AbstractBaseUser, *, per_domain: bool) -> list[Branch]:
    """The domains `user` holds a role in, as branches of a list page's union: one per domain
    (their names are read now) when `per_domain` and they are not too many, else one."""
    if per_domain:
        names = list(
            domain_names_for(user)
            .order_by()
            .distinct()
            .values_list("domain__name", flat=True)[: MAX_DOMAIN_BRANCHES + 1]
        )
        if len(names) <= MAX_DOMAIN_BRANCHES:
            return [Branch(Q(domain=name)) for name in names]
    return [Branch(Q(domain__in=domain_names_for(user)))]


def holds_role(user: AbstractBaseUser, role: str, domain: str) -> bool:
    """Whether `user` holds `role` in `domain`, as long as the domain is managed (active)."""
    domains = MailDomain.objects.filter(name=domain, is_active=True)
    if user.is_superuser:
        return domains.exists()
    return domains.filter(delegations__user=user, delegations__role=role).exists()


def may_request_new_domain(user: AbstractBaseUser) -> bool:
    return user.has_perm(REQUEST_NEW_DOMAIN)


def may_approve_new_domain(user: AbstractBaseUser) -> bool:
    return user.has_perm(APPROVE_NEW_DOMAIN)


def is_auditor(user: AbstractBaseUser) -> bool:
    return user.has_perm(VIEW_ALL_EVENTS)
