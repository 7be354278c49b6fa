import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.core.models import TimeStampedModel

# Codes are what people read out over the phone: no 0/O or 1/I/L.
_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def new_request_code() -> str:
    return "REQ-" + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))


class ProvisioningRequest(TimeStampedModel):
    """One thing a help-desk agent asked for, and everything that happened to it since.

    States (DESIGN.md §2): PENDING -> QUEUED -> RUNNING -> SUCCEEDED | FAILED;
    PENDING -> REJECTED | CANCELLED; FAILED -> QUEUED (retry). Every change of state is a
    conditional UPDATE in `services.py`, written together with its audit row.
    """

    class Kind(models.TextChoices):
        CREATE_DOMAIN = "create_domain", "Create domain"
        DELETE_DOMAIN = "delete_domain", "Delete domain"
        CREATE_MAILBOX = "create_mailbox", "Create mailbox"
        DELETE_MAILBOX = "delete_mailbox", "Delete mailbox"

    class Status(models.TextChoices):
        PENDING = "pending", "Awaiting approval"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected"
        CANCELLED = "cancelled", "Cancelled"

    OPEN_STATUSES = (Status.PENDING, Status.QUEUED, Status.RUNNING)
    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)
    TERMINAL_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.REJECTED, Status.CANCELLED)

    code = models.CharField(max_length=16, unique=True, default=new_request_code, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # The domain acted on (for a mailbox: its domain) and the exact target (domain or address).
    domain = models.CharField(max_length=253)
    target = models.CharField(max_length=320)
    # The non-secret fields of the request (display name, quotas, language...).
    parameters = models.JSONField(default=dict, blank=True)
    # A new mailbox's password, sealed (apps.core.encryption); "" when none or wiped.
    sealed_password = models.TextField(blank=True, default="", editable=False)

    ticket = models.CharField(max_length=64)
    reason = models.TextField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="requests_made"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="requests_decided",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = models.TextField(blank=True)

    # Execution. `attempts` counts claims by a worker and fences late results: a result is
    # recorded only while the request is still RUNNING under the attempt that produced it.
    attempts = models.PositiveIntegerField(default=0)
    # Attempts made before the current run (a retry by an approver starts a new run).
    attempts_before_run = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(null=True, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # An earlier attempt may have changed the server without our knowing (its answer was
    # lost, or its worker died mid-call): the next attempt reads the account back first.
    outcome_uncertain = models.BooleanField(default=False)
    # The last attempt met a configuration problem only an operator can fix (credentials, IP
    # allow-list, TLS trust): the request waits, and the dashboard says what is wrong.
    needs_operator = models.BooleanField(default=False)
    # When the current wait for an operator began (MAILDESK_OPERATOR_WAIT_SECONDS bounds it).
    operator_wait_since = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The server's answer verbatim (e.g. ALREADY_EXISTS) and the same in plain words.
    result_code = models.CharField(max_length=200, blank=True)
    result_message = models.TextField(blank=True)
    correlation_id = models.UUIDField(default=uuid.uuid4, editable=False)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # Nothing done twice: one open request per domain or address at a time.
            models.UniqueConstraint(
                fields=["target"],
                condition=Q(status__in=["pending", "queued", "running"]),
                name="request_one_open_per_target",
            ),
            # A password never outlives the request: wiped in the transaction that ends it.
            models.CheckConstraint(
                condition=Q(sealed_password="") | Q(status__in=["pending", "queued", "running"]),
                name="request_no_secret_when_finished",
            ),
            models.CheckConstraint(
                condition=Q(
                    kind__in=["create_domain", "delete_domain", "create_mailbox", "delete_mailbox"]
                ),
                name="request_kind_known",
            ),
        ]
        indexes = [
            # The sweeper: queued requests waiting too long, running ones with an old lease.
            models.Index(fields=["status", "queued_at"], name="request_status_queued_at"),
            models.Index(fields=["status", "lease_expires_at"], name="request_status_lease"),
            # A requester's own list, newest first.
            models.Index(fields=["requested_by", "-id"], name="request_requester_id"),
            # The codes of a person's requests, without reading the rows: the events of their
            # requests in their audit log (apps.audit.selectors).
            models.Index(fields=["requested_by", "code"], name="request_requester_code"),
            # Lists scoped to delegated domains, newest first.
            models.Index(fields=["domain", "-id"], name="request_domain_id"),
            # "Awaiting approval" and the status filter.
            models.Index(fields=["status", "-id"], name="request_status_id"),
            # New domains in their approvers' lists, and the kind filter, newest first.
            models.Index(fields=["kind", "-id"], name="request_kind_id"),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.get_kind_display()} {self.target}"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES

    @property
    def is_active(self) -> bool:
        """Approved and not finished: a worker has it or will have it soon."""
        return self.status in self.ACTIVE_STATUSES


class RequestComment(TimeStampedModel):
    request = models.ForeignKey(
        ProvisioningRequest, on_delete=models.PROTECT, related_name="comments"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="request_comments"
    )
    body = models.TextField(max_length=4000)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Comment by {self.author} on {self.request.code}"
