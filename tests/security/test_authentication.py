"""Sign-in: throttled per username and address, sessions that end, and audited failures."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.accounts.middleware import SEEN, STARTED
from apps.audit.models import AuditEvent
from tests.conftest import USER_PASSWORD
from tests.helpers import TWO_FACTOR, code, enrolment_key

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"


def sign_in(client: Client, username: str, password: str, ip: str = "192.0.2.10"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=ip)


class TestThrottling:
    def test_five_wrong_passwords_lock_that_username_at_that_address(self, client, alice, settings):
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            assert sign_in(client, "alice", "wrong").status_code == 200
        assert sign_in(client, "alice", "wrong").status_code == 429  # the fifth locks

        locked = sign_in(client, "alice", USER_PASSWORD)

        assert locked.status_code == 429
        assert "Too many failed sign-ins" in locked.content.decode()
        assert "_auth_user_id" not in client.session
        # The five wrong passwords, and the right one refused during the lockout.
        assert AuditEvent.objects.filter(action="auth.login_failed").count() == 6
        assert AuditEvent.objects.filter(action="auth.locked_out", actor_label="alice").exists()

    @pytest.mark.parametrize("login_url", [LOGIN, "/admin/login/"])
    def test_an_over_long_username_is_refused_with_a_message(self, client, login_url):
        # PostgreSQL would refuse to store it in the throttle's table: a server error.
        response = client.post(login_url, {"username": "a" * 300, "password": "x"})

        assert response.status_code == 200
        assert "A username has at most 150 characters." in response.content.decode()
        assert not AccessAttempt.objects.exists()

    def test_one_address_spraying_passwords_over_many_usernames_is_stopped(
        self, client, alice, settings
    ):
        settings.MAILDESK_LOGIN_ADDRESS_FAILURE_LIMIT = 12
        for number in range(6):  # two failures each: below the per-username limit
            for _ in range(2):
                sign_in(client, f"user{number}", "Summer2026!", ip="198.51.100.7")

        refused = sign_in(client, "alice", USER_PASSWORD, ip="198.51.100.7")
        elsewhere = sign_in(Client(), "alice", USER_PASSWORD, ip="192.0.2.99")

        assert refused.status_code == 200
        assert "Too many failed sign-ins from your network" in refused.content.decode()
        assert "_auth_user_id" not in client.session
        assert elsewhere.status_code == 302
        throttled = AuditEvent.objects.get(action="auth.address_throttled")
        assert (throttled.actor_label, throttled.actor_ip) == ("alice", "198.51.100.7")

    def test_an_attacker_elsewhere_cannot_lock_a_person_out(self, client, alice, settings):
        for _ in range(settings.AXES_FAILURE_LIMIT):
            sign_in(client, "alice", "wrong", ip="203.0.113.66")

        answer = sign_in(Client(), "alice", USER_PASSWORD, ip="192.0.2.10")

        assert answer.status_code == 302

    def test_the_lockout_lifts_after_the_cool_off(self, client, alice, settings):
        for _ in range(settings.AXES_FAILURE_LIMIT):
            sign_in(client, "alice", "wrong")
        # The cool-off has passed (the attempts are older than it).
        AccessAttempt.objects.update(
            attempt_time=AccessAttempt.objects.first().attempt_time
            - settings.AXES_COOLOFF_TIME
            - timedelta(seconds=1)
        )

        assert sign_in(client, "alice", USER_PASSWORD).status_code == 302

    def test_a_failed_sign_in_is_audited_without_the_password(self, client, alice):
        sign_in(client, "alice", "My-Guess-Pa55!")

        failed = AuditEvent.objects.get(action="auth.login_failed")
        assert (failed.actor_label, failed.actor_ip) == ("alice", "192.0.2.10")
        assert "My-Guess-Pa55!" not in f"{failed.message} {failed.details}"


class TestSessions:
    def test_the_session_id_changes_at_sign_in(self, client, alice):
        client.get(LOGIN)
        client.session.save()
        before = client.session.session_key

        sign_in(client, "alice", USER_PASSWORD)

        assert client.session.session_key != before
        assert "_auth_user_id" in client.session

    def test_a_session_ends_after_the_idle_timeout(self, client, alice, settings):
        sign_in(client, "alice", USER_PASSWORD)
        key = client.session.session_key
        session = client.session
        session[SEEN] -= settings.MAILDESK_SESSION_IDLE_SECONDS + 1
        session.save()

        answer = client.get("/")

        assert answer.status_code == 302
        assert answer["Location"].startswith(reverse("login"))
        assert not Session.objects.filter(session_key=key).exists()
        assert AuditEvent.objects.filter(action="auth.session_expired", actor=alice).exists()

    def test_a_session_ends_after_the_absolute_timeout_even_when_active(
        self, client, alice, settings
    ):
        sign_in(client, "alice", USER_PASSWORD)
        session = client.session
        session[STARTED] -= settings.MAILDESK_SESSION_ABSOLUTE_SECONDS + 1
        session.save()

        assert client.get("/").status_code == 302

    def test_status_polling_does_not_keep_an_idle_session_alive(self, client, alice, settings):
        from apps.provisioning import services

        request = services.request_submit(
            requester=alice, kind="delete_mailbox", target="old@example.com", parameters={},
            ticket="HD-1", reason="leaver",
        )  # fmt: skip
        sign_in(client, "alice", USER_PASSWORD)
        session = client.session
        seen = session[SEEN] - settings.MAILDESK_SESSION_IDLE_SECONDS + 5
        session[SEEN] = seen
        session.save()

        client.get(f"/requests/{request.code}/status/", HTTP_HX_REQUEST="true")

        assert client.session[SEEN] == seen

    def test_an_expired_session_tells_htmx_to_go_to_the_sign_in_page(self, client, alice, settings):
        sign_in(client, "alice", USER_PASSWORD)
        session = client.session
        session[SEEN] -= settings.MAILDESK_SESSION_IDLE_SECONDS + 1
        session.save()

        answer = client.get("/requests/", HTTP_HX_REQUEST="true")

        assert answer["HX-Redirect"].startswith(reverse("login"))

    def test_sign_out_ends_the_session_on_the_server(self, client, alice):
        sign_in(client, "alice", USER_PASSWORD)
        key = client.session.session_key

        client.post(reverse("logout"))

        assert not Session.objects.filter(session_key=key).exists()

    def test_disabling_a_user_ends_their_sessions(self, client, alice):
        sign_in(client, "alice", USER_PASSWORD)
        key = client.session.session_key
        get_user_model().objects.filter(pk=alice.pk).update(is_active=False)

        answer = client.get("/")

        assert answer.status_code == 302
        assert not Session.objects.filter(session_key=key).exists()

    def test_session_and_csrf_cookies_are_http_only_and_same_site(self, client, alice):
        client.get(LOGIN)
        answer = sign_in(client, "alice", USER_PASSWORD)

        session_cookie = answer.cookies["sessionid"]
        assert session_cookie["httponly"]
        assert session_cookie["samesite"] == "Lax"
        csrf_cookie = client.cookies["csrftoken"]
        assert csrf_cookie["httponly"]


class TestAddressCoolOff:
    SPRAYER = "198.51.100.7"

    def spray(self, client: Client, settings) -> None:
        """Fail the address's limit, two passwords per username (below the per-pair limit)."""
        settings.MAILDESK_LOGIN_ADDRESS_FAILURE_LIMIT = 6
        for number in range(3):
            for _ in range(2):
                sign_in(client, f"user{number}", "Summer2026!", ip=self.SPRAYER)

    def age_the_failures(self, age: timedelta) -> None:
        # The throttle reads django-axes' records of the failures and their times; aging them
        # is the clock moving on (as in the per-pair cool-off test above).
        AccessAttempt.objects.filter(ip_address=self.SPRAYER).update(
            attempt_time=timezone.now() - age
        )

    def test_the_address_is_still_refused_just_before_the_cool_off_ends(
        self, client, alice, settings
    ):
        self.spray(client, settings)
        self.age_the_failures(settings.AXES_COOLOFF_TIME - timedelta(minutes=1))

        refused = sign_in(client, "alice", USER_PASSWORD, ip=self.SPRAYER)

        assert refused.status_code == 200
        assert "Too many failed sign-ins from your network" in refused.content.decode()
        assert "_auth_user_id" not in client.session

    def test_the_address_may_sign_in_again_once_the_cool_off_has_passed(
        self, client, alice, settings
    ):
        self.spray(client, settings)
        refused = sign_in(client, "alice", USER_PASSWORD, ip=self.SPRAYER)
        assert "Too many failed sign-ins from your network" in refused.content.decode()
        # A refusal tries no password, so it records no failure: the wait is not prolonged.
        assert AccessAttempt.objects.filter(ip_address=self.SPRAYER).count() == 3

        self.age_the_failures(settings.AXES_COOLOFF_TIME + timedelta(seconds=1))
        answer = sign_in(client, "alice", USER_PASSWORD, ip=self.SPRAYER)

        assert answer.status_code == 302
        assert "_auth_user_id" in client.session
        assert AuditEvent.objects.filter(action="auth.address_throttled").count() == 1
        signed_in = AuditEvent.objects.get(action="auth.login")
        assert (signed_in.actor, signed_in.actor_ip) == (alice, self.SPRAYER)


class TestNextOverHttps:
    """In production the portal sits behind an HTTPS proxy (SECURE_PROXY_SSL_HEADER): after
    sign-in or the second factor, a `next` that leads back to plain HTTP, even on this very
    host, is not followed (it would send the session's first page over the network in clear)."""

    HOST = "portal.example.net"

    @pytest.fixture
    def production(self, settings) -> None:
        settings.ALLOWED_HOSTS = [self.HOST]
        settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
        settings.SECURE_SSL_REDIRECT = True
        settings.SESSION_COOKIE_SECURE = True
        settings.CSRF_COOKIE_SECURE = True

    def behind_the_proxy(self) -> Client:
        return Client(HTTP_HOST=self.HOST, HTTP_X_FORWARDED_PROTO="https")

    @pytest.mark.parametrize(
        ("scheme", "followed"), [("http", False), ("https", True)], ids=["http", "https"]
    )
    def test_sign_in_follows_next_only_over_https(self, production, alice, scheme, followed):
        target = f"{scheme}://{self.HOST}/requests/"
        client = self.behind_the_proxy()

        answer = client.post(
            LOGIN, {"username": "alice", "password": USER_PASSWORD, "next": target}
        )

        assert answer.status_code == 302
        assert answer["Location"] == (target if followed else reverse("core:dashboard"))
        assert "_auth_user_id" in client.session

    @pytest.mark.parametrize(
        ("scheme", "followed"), [("http", False), ("https", True)], ids=["http", "https"]
    )
    def test_the_second_factor_follows_next_only_over_https(
        self, production, bob, settings, scheme, followed
    ):
        settings.MAILDESK_REQUIRE_2FA = True
        target = f"{scheme}://{self.HOST}/requests/"
        client = self.behind_the_proxy()
        assert client.post(LOGIN, {"username": "bob", "password": USER_PASSWORD}).status_code == 302
        key = enrolment_key(client)

        answer = client.post(TWO_FACTOR, {"token": code(key), "next": target})

        assert answer.status_code == 302
        assert answer["Location"] == (target if followed else "/")
        assert client.get("/requests/").status_code == 200  # verified either way
