"""Two-factor authentication for approvers and portal admins, and its audited reset."""

import logging
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts.middleware import STARTED
from apps.accounts.services import ENROLMENT_KEY
from apps.accounts.views import ENROL_WITHIN_SECONDS
from apps.audit.models import AuditEvent
from apps.provisioning import services
from tests.conftest import USER_PASSWORD, make_user
from tests.helpers import TWO_FACTOR, code, enrolment_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def required(settings):
    settings.MAILDESK_REQUIRE_2FA = True


def signed_in(username: str) -> Client:
    client = Client()
    answer = client.post("/accounts/login/", {"username": username, "password": USER_PASSWORD})
    assert answer.status_code == 302
    return client


def enrol(client: Client, user) -> bytes:
    key = enrolment_key(client)
    answer = client.post(TWO_FACTOR, {"token": code(key), "next": "/"})
    assert answer.status_code == 302
    assert TOTPDevice.objects.get(user=user, confirmed=True).bin_key == key
    return key


def test_the_page_asked_for_comes_back_whole_after_enrolment(required, bob):
    """Its query string is encoded into `next`, not cut at its first `&`."""
    answer = signed_in("bob").get("/requests/?status=pending&mine=on")

    assert answer["Location"] == f"{TWO_FACTOR}?next=/requests/%3Fstatus%3Dpending%26mine%3Don"


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

    enrol(client, bob)

    assert client.get("/requests/").status_code == 200
    assert ENROLMENT_KEY not in client.session
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
    key = enrol(signed_in("bob"), bob)
    client = signed_in("bob")

    page = client.get(TWO_FACTOR).content.decode()
    answer = client.post(TWO_FACTOR, {"token": code(key, drift=1), "next": "/audit/"})

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
    key = enrolment_key(client)

    answer = client.post(TWO_FACTOR, {"token": code(key), "next": "https://evil.example/"})

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
    assert (reset.actor, reset.target) == (root, "bob")
    assert reset.details == {"devices_removed": 1, "sessions_ended": 1}
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
    secret_hex = client.session[ENROLMENT_KEY]

    enrol(client, bob)

    assert secret_hex not in caplog.text
    for row in AuditEvent.objects.all():
        assert secret_hex not in f"{row.message} {row.details}"
    assert "otpauth://" not in page  # only inside the QR image, not as text or a link


def test_the_key_being_set_up_belongs_to_one_session_and_is_saved_only_once_confirmed(
    required, bob
):
    # Someone else with bob's password, signed in before him, must not learn bob's key.
    intruder, owner = signed_in("bob"), signed_in("bob")

    intruders_key = enrolment_key(intruder)
    wrong = owner.post(TWO_FACTOR, {"token": code(intruders_key)})
    owners_key = enrol(owner, bob)

    assert wrong.status_code == 200
    assert owners_key != intruders_key
    assert TOTPDevice.objects.filter(user=bob).count() == 1
    late = intruder.post(TWO_FACTOR, {"token": code(intruders_key)})
    assert "That code is not right" in late.content.decode()


def test_a_wrong_code_leaves_no_device_behind(required, bob):
    client = signed_in("bob")
    enrolment_key(client)

    client.post(TWO_FACTOR, {"token": "000000"})

    assert not TOTPDevice.objects.filter(user=bob).exists()


def test_setting_up_needs_a_recent_password_sign_in(required, bob):
    client = signed_in("bob")
    session = client.session
    session[STARTED] -= ENROL_WITHIN_SECONDS + 1
    session.save()

    answer = client.get(TWO_FACTOR)

    assert answer.status_code == 302
    assert answer["Location"] == f"/accounts/login/?next={TWO_FACTOR}"
    assert "_auth_user_id" not in client.session
    assert not TOTPDevice.objects.filter(user=bob).exists()


def test_a_reset_ends_the_sessions_the_person_had_open(required, bob):
    lost_phone = signed_in("bob")
    enrol(lost_phone, bob)
    assert lost_phone.get("/requests/").status_code == 200

    call_command("reset_2fa", "bob", stdout=StringIO())

    answer = lost_phone.get("/requests/")
    assert answer.status_code == 302
    assert answer["Location"].startswith("/accounts/login/")


def test_only_a_person_who_may_change_staff_resets_and_never_a_superusers(required, bob, root):
    enrol(signed_in("bob"), bob)
    enrol(signed_in("root"), root)
    helper = make_user("helper")
    helper.is_staff = True
    helper.save()
    helper.user_permissions.add(Permission.objects.get(codename="view_user"))
    client = signed_in("helper")
    enrol(client, helper)
    reset = {"action": "reset_two_factor", "_selected_action": [bob.pk, root.pk]}

    client.post("/admin/auth/user/", reset)
    assert TOTPDevice.objects.filter(user__in=[bob, root]).count() == 2

    helper.user_permissions.add(Permission.objects.get(codename="change_user"))
    answer = client.post("/admin/auth/user/", reset, follow=True)

    assert not TOTPDevice.objects.filter(user=bob).exists()
    assert TOTPDevice.objects.filter(user=root).exists()
    assert "only a superuser resets one" in answer.content.decode()
    assert AuditEvent.objects.filter(action="auth.2fa_reset").count() == 1


def test_the_code_that_set_up_the_device_cannot_be_replayed_in_another_session(required, bob):
    # Someone who watched bob type his first code, and has his password, signs in elsewhere
    # within the same 30 seconds: the code is still current, but it was used.
    owner = signed_in("bob")
    key = enrolment_key(owner)
    first_code = code(key)
    assert owner.post(TWO_FACTOR, {"token": first_code, "next": "/"}).status_code == 302
    replayer = signed_in("bob")

    answer = replayer.post(TWO_FACTOR, {"token": first_code, "next": "/requests/"})

    assert answer.status_code == 200
    assert "That code is not right" in answer.content.decode()
    assert replayer.get("/requests/")["Location"].startswith(TWO_FACTOR)
    assert AuditEvent.objects.filter(action="auth.2fa_failed", actor=bob).count() == 1
    assert not AuditEvent.objects.filter(action="auth.2fa_verified").exists()


def test_a_code_that_verified_one_session_cannot_be_replayed_in_another(required, bob):
    key = enrol(signed_in("bob"), bob)
    # The next time step's code: the enrolment used the current one.
    used_code = code(key, drift=1)
    first = signed_in("bob")
    assert first.post(TWO_FACTOR, {"token": used_code, "next": "/"})["Location"] == "/"
    replayer = signed_in("bob")

    answer = replayer.post(TWO_FACTOR, {"token": used_code, "next": "/requests/"})

    assert answer.status_code == 200
    assert "That code is not right" in answer.content.decode()
    assert replayer.get("/requests/")["Location"].startswith(TWO_FACTOR)
    assert first.get("/requests/").status_code == 200  # the honest session stays verified
    assert AuditEvent.objects.filter(action="auth.2fa_verified", actor=bob).count() == 1
    assert AuditEvent.objects.filter(action="auth.2fa_failed", actor=bob).count() == 1


def test_a_superuser_resets_another_superusers_second_factor_and_ends_their_sessions(
    required, root
):
    other_root = make_user("other-root", superuser=True)
    lost_phone = signed_in("other-root")
    enrol(lost_phone, other_root)
    laptop = signed_in("other-root")  # signed in, not yet past the second factor
    admin = signed_in("root")
    enrol(admin, root)
    sessions_before = {lost_phone.session.session_key, laptop.session.session_key}

    answer = admin.post(
        "/admin/auth/user/",
        {"action": "reset_two_factor", "_selected_action": [other_root.pk]},
        follow=True,
    )

    page = answer.content.decode()
    assert "Two-factor authentication reset for 1 person(s)" in page
    assert "left as they were" not in page
    assert not TOTPDevice.objects.filter(user=other_root).exists()
    assert TOTPDevice.objects.filter(user=root).exists()
    assert not Session.objects.filter(session_key__in=sessions_before).exists()
    for client in (lost_phone, laptop):
        assert client.get("/requests/")["Location"].startswith("/accounts/login/")
    assert admin.get("/admin/auth/user/").status_code == 200  # the admin's own session stays
    reset = AuditEvent.objects.get(action="auth.2fa_reset")
    assert (reset.actor, reset.target) == (root, "other-root")
    assert reset.details == {"devices_removed": 1, "sessions_ended": 2}
