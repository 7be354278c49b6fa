"""Two-factor authentication for approvers and portal admins, and its audited reset."""

import logging
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.audit.models import AuditEvent
from apps.provisioning import services
from tests.conftest import USER_PASSWORD

pytestmark = pytest.mark.django_db

TWO_FACTOR = "/accounts/two-factor/"


@pytest.fixture
def required(settings):
    settings.MAILDESK_REQUIRE_2FA = True


def signed_in(username: str) -> Client:
    client = Client()
    answer = client.post("/accounts/login/", {"username": username, "password": USER_PASSWORD})
    assert answer.status_code == 302
    return client


def code(device: TOTPDevice, drift: int = 0) -> str:
    return f"{totp(device.bin_key, drift=drift):06d}"


def enrol(client: Client, user) -> TOTPDevice:
    client.get(TWO_FACTOR)
    device = TOTPDevice.objects.get(user=user)
    answer = client.post(TWO_FACTOR, {"token": code(device), "next": "/"})
    assert answer.status_code == 302
    return device


def test_an_approver_must_set_up_a_second_factor_before_anything_else(required, bob):
    client = signed_in("bob")

    answer = client.get("/requests/")
    enrolment = client.get(answer["Location"])

    assert answer.status_code == 302
    assert answer["Location"] == f"{TWO_FACTOR}?next=/requests/"
    page = enrolment.content.decode()
    assert 'src="data:image/svg+xml' in page  # the QR code
    assert "Set up two-factor authentication" in page
    assert "no-store" in enrolment["Cache-Control"]


def test_a_right_code_sets_it_up_and_opens_the_portal(required, bob):
    client = signed_in("bob")

    device = enrol(client, bob)

    device.refresh_from_db()
    assert device.confirmed
    assert client.get("/requests/").status_code == 200
    enrolled = AuditEvent.objects.get(action="auth.2fa_enrolled")
    assert enrolled.actor == bob


def test_a_wrong_code_is_refused_and_audited(required, bob):
    client = signed_in("bob")
    client.get(TWO_FACTOR)

    answer = client.post(TWO_FACTOR, {"token": "000000"})

    assert answer.status_code == 200
    assert "That code is not right" in answer.content.decode()
    assert client.get("/").status_code == 302
    assert AuditEvent.objects.filter(action="auth.2fa_failed", actor=bob).exists()


def test_each_new_sign_in_asks_for_a_code_without_showing_the_secret(required, bob):
    device = enrol(signed_in("bob"), bob)
    client = signed_in("bob")

    page = client.get(TWO_FACTOR).content.decode()
    answer = client.post(TWO_FACTOR, {"token": code(device, drift=1), "next": "/audit/"})

    assert "Confirm it is you" in page
    assert "data:image/svg" not in page
    assert answer["Location"] == "/audit/"
    assert AuditEvent.objects.filter(action="auth.2fa_verified", actor=bob).exists()


def test_an_unverified_approver_cannot_approve(required, alice, bob):
    pending = services.request_submit(
        requester=alice, kind="delete_mailbox", target="old@example.com", parameters={},
        ticket="HD-1", reason="leaver",
    )  # fmt: skip
    client = signed_in("bob")

    answer = client.post(f"/requests/{pending.code}/approve/")

    assert answer.status_code == 302
    assert answer["Location"].startswith(TWO_FACTOR)
    pending.refresh_from_db()
    assert pending.status == "pending"


@pytest.mark.parametrize("who", ["root", "bob"])
def test_portal_admins_and_approvers_need_it_requesters_do_not(required, alice, bob, root, who):
    assert signed_in(who).get("/").status_code == 302
    assert signed_in("alice").get("/").status_code == 200


def test_when_not_required_only_those_who_enrolled_use_it(settings, bob):
    settings.MAILDESK_REQUIRE_2FA = True
    enrol(signed_in("bob"), bob)
    settings.MAILDESK_REQUIRE_2FA = False

    assert signed_in("bob").get("/").status_code == 302


def test_htmx_requests_are_sent_to_the_two_factor_page(required, bob):
    answer = signed_in("bob").get("/requests/", HTTP_HX_REQUEST="true")

    assert answer["HX-Redirect"].startswith(TWO_FACTOR)


def test_next_never_leads_off_the_portal(required, bob):
    client = signed_in("bob")
    client.get(TWO_FACTOR)
    device = TOTPDevice.objects.get(user=bob)

    answer = client.post(TWO_FACTOR, {"token": code(device), "next": "https://evil.example/"})

    assert answer["Location"] == "/"


def test_a_portal_admin_resets_a_lost_phone_and_it_is_audited(required, bob, root):
    enrol(signed_in("bob"), bob)
    admin = signed_in("root")
    enrol(admin, root)

    answer = admin.post(
        "/admin/auth/user/",
        {"action": "reset_two_factor", "_selected_action": [bob.pk]},
    )

    assert answer.status_code == 302
    assert not TOTPDevice.objects.filter(user=bob).exists()
    reset = AuditEvent.objects.get(action="auth.2fa_reset")
    assert (reset.actor, reset.target, reset.details) == (root, "bob", {"devices_removed": 1})
    assert "Set up two-factor" in signed_in("bob").get(TWO_FACTOR).content.decode()


def test_the_reset_command_is_audited_and_names_an_unknown_user(required, bob):
    enrol(signed_in("bob"), bob)

    call_command("reset_2fa", "bob", stdout=StringIO())

    assert not TOTPDevice.objects.filter(user=bob).exists()
    assert AuditEvent.objects.get(action="auth.2fa_reset").actor_label == "manage.py reset_2fa"
    with pytest.raises(CommandError, match="no user 'nobody'"):
        call_command("reset_2fa", "nobody")


def test_the_device_secret_reaches_no_log_and_no_audit_row(required, bob, caplog):
    caplog.set_level(logging.DEBUG)
    client = signed_in("bob")
    page = client.get(TWO_FACTOR).content.decode()
    device = TOTPDevice.objects.get(user=bob)
    secret_hex = device.key

    enrol(client, bob)

    assert secret_hex not in caplog.text
    for row in AuditEvent.objects.all():
        assert secret_hex not in f"{row.message} {row.details}"
    assert "otpauth://" not in page  # only inside the QR image, not as text or a link
