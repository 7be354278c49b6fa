"""Reads of the audit log, through the reader's scope."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet

from apps.accounts.selectors import domain_names_for, is_auditor
from apps.audit.models import AuditEvent
from apps.provisioning.models import ProvisioningRequest


def events_visible_to(user: AbstractBaseUser) -> QuerySet[AuditEvent]:
    """Auditors and portal admins read everything; others read their own actions, the events
    of the domains they hold a role in, and those of the requests they made."""
    events = AuditEvent.objects.all()
    if user.is_superuser or is_auditor(user):
        return events
    own_requests = ProvisioningRequest.objects.filter(requested_by=user).values("code")
    return events.filter(
        Q(actor=user) | Q(domain__in=domain_names_for(user)) | Q(request_code__in=own_requests)
    )
