"""Second-factor devices: enrolment, verification, and an admin's reset. All audited."""

import base64
import time

import django_otp
import segno
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.sessions.models import Session
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp.util import random_hex

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.core.http import client_ip

Outcome = AuditEvent.Outcome

# The key being set up lives in this session only, until a first code confirms it: another
# session of the same person (someone who also has the password) sees another key.
ENROLMENT_KEY = "maildesk_2fa_enrolment_key"


def confirmed_device(user: AbstractBaseUser) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def enrolment_device(request: HttpRequest) -> TOTPDevice:
    """The device this session is setting up; not saved until a first code confirms it."""
    key = request.session.get(ENROLMENT_KEY)
    if key is None:
        key = request.session[ENROLMENT_KEY] = random_hex(20)
    return TOTPDevice(user=request.user, key=key, name="Authenticator app", confirmed=False)


def enrolment_details(device: TOTPDevice) -> dict[str, str]:
    """What the person scans or types into their app. Shown on the enrolment page only."""
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    return {
        "qr_code": segno.make(device.config_url, error="m").svg_data_uri(scale=5),
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
    }


@transaction.atomic
def second_factor_verify(*, request: HttpRequest, device: TOTPDevice, token: str) -> bool:
    """Check a code; a right one verifies this session (and saves a device being set up)."""
    enrolling = device.pk is None
    if enrolling:
        verified = _confirm_enrolment(device, token)
    else:
        allowed, _ = device.verify_is_allowed()  # django-otp slows guessing down
        verified = allowed and device.verify_token(token)
    if not verified:
        audit_record(
            action="auth.2fa_failed", actor=request.user, ip=client_ip(request),
            outcome=Outcome.FAILURE,
        )  # fmt: skip
        return False
    request.session.pop(ENROLMENT_KEY, None)
    django_otp.login(request, device)
    audit_record(
        action="auth.2fa_enrolled" if enrolling else "auth.2fa_verified",
        actor=request.user, ip=client_ip(request), outcome=Outcome.SUCCESS,
    )  # fmt: skip
    return True


def _confirm_enrolment(device: TOTPDevice, token: str) -> bool:
    # Checked without saving: a wrong code leaves no half-made device behind. No throttle is
    # needed here, the person guessing is the one who was shown the key.
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    if not token.isdigit() or not totp.verify(int(token), device.tolerance):
        return False
    # One device per person: the person's row is locked so that two sessions enrolling at
    # the same moment cannot both succeed.
    get_user_model().objects.select_for_update().filter(pk=device.user_id).first()
    if TOTPDevice.objects.filter(user_id=device.user_id, confirmed=True).exists():
        return False
    TOTPDevice.objects.filter(user_id=device.user_id).delete()  # leftovers, never confirmed
    device.confirmed = True
    device.last_t = totp.t()
    device.save()
    return True


@transaction.atomic
def second_factor_reset(
    *, user: AbstractBaseUser, actor: AbstractBaseUser | None, actor_label: str | None = None,
    ip: str | None = None,
) -> int:  # fmt: skip
    """Remove a person's devices (lost phone) and end their sessions.

    They sign in again with their password and set up a new device. Ending the sessions
    matters: an open session (on the lost phone, say) would otherwise be the one to enrol.
    """
    removed, _ = TOTPDevice.objects.filter(user=user).delete()
    ended = end_sessions(user)
    audit_record(
        action="auth.2fa_reset", actor=actor, actor_label=actor_label, ip=ip,
        target=user.get_username(), outcome=Outcome.SUCCESS,
        details={"devices_removed": removed, "sessions_ended": ended},
    )  # fmt: skip
    return removed


def end_sessions(user: AbstractBaseUser) -> int:
    """Delete every open session of `user` from the session store; returns how many.

    Sessions do not index their user, so each open one is decoded: an admin's occasional
    action over the staff's sessions, not a path any page takes.
    """
    mine = [
        session.pk
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if session.get_decoded().get("_auth_user_id") == str(user.pk)
    ]
    Session.objects.filter(pk__in=mine).delete()
    return len(mine)
