"""Logins and failed logins into the audit log, from Django's auth signals."""

import time
from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth import user_logged_in, user_logged_out, user_login_failed
from django.contrib.auth.models import AbstractBaseUser
from django.dispatch import receiver
from django.http import HttpRequest

from apps.accounts.middleware import SEEN, STARTED
from apps.audit.models import AuditEvent
from apps.audit.services import audit_failed_sign_in, audit_record
from apps.core.http import client_ip


@receiver(user_logged_in)
def record_login(sender: Any, request: HttpRequest, user: AbstractBaseUser, **kwargs: Any) -> None:
    # The session limits (apps.accounts.middleware) count from here.
    now = time.time()
    request.session[STARTED] = request.session[SEEN] = now
    audit_record(
        action="auth.login", actor=user, ip=client_ip(request), outcome=AuditEvent.Outcome.SUCCESS
    )


@receiver(user_logged_out)
def record_logout(
    sender: Any, request: HttpRequest, user: AbstractBaseUser | None, **kwargs: Any
) -> None:
    if user is not None:
        audit_record(action="auth.logout", actor=user, ip=client_ip(request))


@receiver(user_login_failed)
def record_failed_login(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # `credentials` has the password already masked by Django; only the username is kept.
    audit_failed_sign_in(
        action="auth.login_failed",
        username=str(credentials.get("username", "")),
        ip=client_ip(request) if request is not None else None,
        outcome=AuditEvent.Outcome.FAILURE,
    )


@receiver(user_locked_out)
def record_lockout(
    sender: Any, request: HttpRequest | None, username: str | None, ip_address: str | None,
    **kwargs: Any,
) -> None:  # fmt: skip
    audit_failed_sign_in(action="auth.locked_out", username=username, ip=ip_address)
