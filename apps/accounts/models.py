from django.conf import settings
from django.db import models

from apps.core.models import TimeStampedModel
from apps.iredadmin.validators import validate_domain_name


class MailDomain(TimeStampedModel):
    """A mail domain Maildesk manages: delegations point at it, requests act on it.

    Created by an approved create-domain request (or by a portal admin for domains that exist
    already); deactivated, not deleted, when a delete-domain request succeeds.
    """

    name = models.CharField(max_length=253, unique=True, validators=[validate_domain_name])
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("request_new_domain", "May request new mail domains"),
            ("approve_new_domain", "May approve requests for new mail domains"),
        ]

    def __str__(self) -> str:
        return self.name if self.is_active else f"{self.name} (deleted)"


class Delegation(TimeStampedModel):
    """What one staff member may do in one domain."""

    class Role(models.TextChoices):
        REQUESTER = "requester", "Requester (opens requests)"
        APPROVER = "approver", "Approver (approves, rejects, retries)"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="delegations"
    )
    domain = models.ForeignKey(MailDomain, on_delete=models.CASCADE, related_name="delegations")
    role = models.CharField(max_length=16, choices=Role.choices)

    class Meta:
        ordering = ["domain__name", "user__username", "role"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "domain", "role"], name="delegation_unique_user_domain_role"
            ),
        ]
        indexes = [
            # Scope checks: "the domains this user holds a role in".
            models.Index(fields=["user", "role"], name="delegation_user_role"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} of {self.domain.name}"
