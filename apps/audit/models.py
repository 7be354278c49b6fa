from django.conf import settings
from django.db import models
from django.utils import timezone


class AppendOnlyError(Exception):
    """Audit rows are never changed or removed once written."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs: object) -> int:
        raise AppendOnlyError("audit events cannot be updated")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("audit events cannot be deleted")


class AuditEvent(models.Model):
    """One thing that happened, written in the same transaction as the change it records.

    Append-only: the model refuses updates and deletes, and on PostgreSQL a trigger refuses
    them too (migration 0002), so neither a bug nor a shell session can rewrite history.
    """

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"
        REFUSED = "refused", "Refused"
        INFO = "info", "Info"

    occurred_at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        # A person with audit rows is deactivated, never deleted.
        on_delete=models.PROTECT,
        related_name="audit_events",
        # The (actor, id) index below serves the lookups a plain one would.
        db_index=False,
    )
    # Who acted, as shown at the time: a username, or "worker" for the execution pipeline.
    actor_label = models.CharField(max_length=150)
    actor_ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=64)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.INFO)
    # The mail domain or address acted on, and the domain alone (for scope filtering).
    target = models.CharField(max_length=320, blank=True)
    domain = models.CharField(max_length=253, blank=True)
    request_code = models.CharField(max_length=16, blank=True)
    ticket = models.CharField(max_length=64, blank=True)
    # The API's error message verbatim (control characters removed, length capped).
    message = models.TextField(blank=True)
    correlation_id = models.UUIDField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    # The hash chain (apps.audit.chain): which of the chains the row is on, the previous
    # row's seal on that chain, and this row's.
    # No database default, on purpose: a process of an older release (one chain) inserting
    # without it fails loudly instead of landing on chain 0 out of turn.
    chain = models.PositiveSmallIntegerField(default=0, editable=False)
    previous_seal = models.CharField(max_length=64, editable=False)
    seal = models.CharField(max_length=64, editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        permissions = [("view_all_events", "May read and export the whole audit log (auditor)")]
        indexes = [
            # The audit list filtered by one of these, newest first, paged by id.
            models.Index(fields=["actor_label", "-id"], name="audit_actor_label_id"),
            models.Index(fields=["action", "-id"], name="audit_action_id"),
            models.Index(fields=["domain", "-id"], name="audit_domain_id"),
            models.Index(fields=["target", "-id"], name="audit_target_id"),
            models.Index(fields=["ticket", "-id"], name="audit_ticket_id"),
            models.Index(fields=["occurred_at"], name="audit_occurred_at"),
            # A reader's own actions, newest first (a branch of their scope, selectors.py).
            models.Index(fields=["actor", "-id"], name="audit_actor_id"),
            # A request's timeline.
            models.Index(fields=["request_code", "id"], name="audit_request_code_id"),
            # The head of each chain, read by every writer.
            models.Index(fields=["chain", "-id"], name="audit_chain_id"),
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action}"

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding:
            raise AppendOnlyError("audit events cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("audit events cannot be deleted")
