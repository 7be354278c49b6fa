"""Failed sign-ins per client address, across usernames (django-axes counts per pair)."""

from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from apps.audit.services import audit_failed_sign_in


def address_is_throttled(ip: str) -> bool:
    """Whether `ip` failed MAILDESK_LOGIN_ADDRESS_FAILURE_LIMIT times within the cool-off.

    Read from django-axes' own records (one row per username and address, with its failure
    count and the time of the last one), so that nothing else is written per attempt.
    """
    since = timezone.now() - settings.AXES_COOLOFF_TIME
    failures = AccessAttempt.objects.filter(ip_address=ip, attempt_time__gte=since).aggregate(
        total=Sum("failures_since_start")
    )["total"]
    return (failures or 0) >= settings.MAILDESK_LOGIN_ADDRESS_FAILURE_LIMIT


def record_address_refusal(username: str | None, ip: str) -> None:
    audit_failed_sign_in(action="auth.address_throttled", username=username, ip=ip)
