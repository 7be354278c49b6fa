"""Two-factor authentication (TOTP): who needs it, and the check on every request.

Approvers and portal admins need a second factor when MAILDESK_REQUIRE_2FA is on (the default
in production); anyone who enrolled a device uses it. Until verified in this session, such a
person reaches only the two-factor page and sign-out.
"""

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django_otp import user_has_device

from apps.accounts.models import Delegation
from apps.accounts.selectors import may_approve_new_domain
from apps.core.http import send_to, url_with_next


def second_factor_required(user: AbstractBaseUser) -> bool:
    if user_has_device(user):
        return True
    if not settings.MAILDESK_REQUIRE_2FA:
        return False
    return (
        user.is_staff
        or may_approve_new_domain(user)  # superusers included
        or Delegation.objects.filter(user=user, role=Delegation.Role.APPROVER).exists()
    )


class SecondFactorMiddleware:
    """After django-otp's OTPMiddleware, which tells whether this session is verified."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if (
            user.is_authenticated
            and not user.is_verified()
            and request.path not in _exempt_paths()
            and second_factor_required(user)
        ):
            return send_to(
                request, url_with_next(reverse("accounts:two_factor"), request.get_full_path())
            )
        return self.get_response(request)


def _exempt_paths() -> set[str]:
    # Exact paths, not prefixes: a future URL that merely starts like one of these must not
    # skip the second factor. Static files never get here (WhiteNoise answers them first).
    return {reverse("accounts:two_factor"), reverse("logout"), reverse("core:healthz")}
