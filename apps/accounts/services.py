"""Second-factor devices: enrolment, verification, and an admin's reset. All audited."""

import base64

import django_otp
import segno
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.http import HttpRequest
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.core.http import client_ip

Outcome = AuditEvent.Outcome


def confirmed_device(user: AbstractBaseUser) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def enrolment_device(user: AbstractBaseUser) -> TOTPDevice:
    """The device being set up: made once, kept until confirmed with a first code."""
    device, _ = TOTPDevice.objects.get_or_create(
        user=user, confirmed=False, defaults={"name": "Authenticator app"}
    )
    return device


def enrolment_details(device: TOTPDevice) -> dict[str, str]:
    """What the person scans or types into their app. Shown on the enrolment page only."""
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    return {
        "qr_code": segno.make(device.config_url, error="m").svg_data_uri(scale=5),
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
    }


@transaction.atomic
def second_factor_verify(*, request: HttpRequest, device: TOTPDevice, token: str) -> bool:
    """Check a code; a right one verifies this session (and confirms a new device)."""
    allowed, _ = device.verify_is_allowed()  # django-otp slows guessing down
    if not allowed or not device.verify_token(token):
        audit_record(
            action="auth.2fa_failed", actor=request.user, ip=client_ip(request),
            outcome=Outcome.FAILURE,
        )  # fmt: skip
        return False
    enrolled = not device.confirmed
    if enrolled:
        device.confirmed = True
        device.save(update_fields=["confirmed"])
    django_otp.login(request, device)
    audit_record(
        action="auth.2fa_enrolled" if enrolled else "auth.2fa_verified",
        actor=request.user, ip=client_ip(request), outcome=Outcome.SUCCESS,
    )  # fmt: skip
    return True


@transaction.atomic
def second_factor_reset(
    *, user: AbstractBaseUser, actor: AbstractBaseUser | None, actor_label: str | None = None,
    ip: str | None = None,
) -> int:  # fmt: skip
    """Remove a person's devices (lost phone): they enrol again at their next sign-in."""
    removed, _ = TOTPDevice.objects.filter(user=user).delete()
    audit_record(
        action="auth.2fa_reset", actor=actor, actor_label=actor_label, ip=ip,
        target=user.get_username(), outcome=Outcome.SUCCESS, details={"devices_removed": removed},
    )  # fmt: skip
    return removed
