"""Integration: the real client against the emulator over real sockets, in both dialects."""

import threading
import time

import pytest

from apps.iredadmin.client import IRedAdminClient
from apps.iredadmin.emulator import CURRENT, LEGACY, Fault
from apps.iredadmin.emulator_http import EmulatorControl
from apps.iredadmin.errors import AuthenticationError, RejectedError, TransientError
from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME

MAILBOX_PASSWORD = "Mailb0x-Pass!"


def client_for(server, **options) -> IRedAdminClient:
    return IRedAdminClient(server.url, ADMIN_USERNAME, ADMIN_PASSWORD, **options)


def test_it_creates_a_domain_with_every_seed_field_in_both_dialects(any_dialect_server):
    client = client_for(any_dialect_server)

    client.create_domain(
        "Example.COM",
        name="Example Ltd",
        quota_mb=10240,
        language="de_DE",
        default_user_quota_mb=512,
        max_user_quota_mb=2048,
        max_users=50,
        max_aliases=20,
    )

    stored = any_dialect_server.emulator.domain("example.com")
    assert client.dialect == any_dialect_server.emulator.dialect
    assert stored["description"] == "Example Ltd"
    assert stored["maxquota"] == 10240
    assert stored["settings"] == {
        "default_language": "de_DE",
        "default_user_quota": 512,
        "max_user_quota": 2048,
    }
    assert (stored["mailboxes"], stored["aliases"]) == (50, 20)


def test_it_creates_and_deletes_a_mailbox_in_both_dialects(any_dialect_server):
    any_dialect_server.emulator.add_domain("example.com")
    client = client_for(any_dialect_server)

    client.create_user(
        "Jane.Doe@Example.com",
        password=MAILBOX_PASSWORD,
        name="Jane Doe",
        language="fr_FR",
        quota_mb=300,
    )
    stored = any_dialect_server.emulator.mailbox("jane.doe@example.com")
    client.delete_user("jane.doe@example.com")

    assert (stored["name"], stored["language"], stored["quota"]) == ("Jane Doe", "fr_FR", 300)
    assert any_dialect_server.emulator.mailbox("jane.doe@example.com") is None
    assert any_dialect_server.emulator.stats()["created"] == {"user:jane.doe@example.com": 1}


def test_it_reads_back_what_it_created_in_the_current_dialect(emulator_server):
    client = client_for(emulator_server)
    client.create_domain("example.com", name="Example", max_users=10)
    client.create_user("jane@example.com", password=MAILBOX_PASSWORD, name="Jane", quota_mb=100)

    domain = client.get_domain("example.com")
    user = client.get_user("jane@example.com")

    assert (domain["domain"], domain["description"], domain["mailboxes"]) == (
        "example.com",
        "Example",
        10,
    )
    assert domain["num_existing_users"] == 1
    assert (user["username"], user["name"], user["quota"]) == ("jane@example.com", "Jane", 100)
    assert "password" not in user
    assert client.list_domains() == ["example.com"]


def test_it_cannot_read_accounts_from_a_legacy_server(make_emulator):
    server = make_emulator(LEGACY)
    server.emulator.add_domain("example.com")
    client = client_for(server)

    with pytest.raises(RejectedError) as error:
        client.get_domain("example.com")

    assert error.value.code == "UNSUPPORTED_OPERATION"
    assert "GET domain" not in server.emulator.stats()["calls"]


def test_it_sends_an_address_with_a_hash_intact(emulator_server):
    emulator_server.emulator.add_domain("example.com")
    client = client_for(emulator_server)

    client.create_user("sales#eu@example.com", password=MAILBOX_PASSWORD)

    assert emulator_server.emulator.accounts()["users"] == ["sales#eu@example.com"]
    assert client.get_user("sales#eu@example.com")["username"] == "sales#eu@example.com"


def test_it_reports_server_refusals_verbatim(any_dialect_server):
    any_dialect_server.emulator.add_domain("example.com", mailboxes=1)
    any_dialect_server.emulator.add_mailbox("taken@example.com", MAILBOX_PASSWORD)
    client = client_for(any_dialect_server)

    with pytest.raises(RejectedError) as exists:
        client.create_user("taken@example.com", password=MAILBOX_PASSWORD)
    with pytest.raises(RejectedError) as full:
        client.create_user("new@example.com", password=MAILBOX_PASSWORD)
    with pytest.raises(RejectedError) as weak:
        client.create_user("new@missing.example", password="weak")

    assert exists.value.code == "ALREADY_EXISTS"
    assert exists.value.may_have_taken_effect is False
    assert full.value.code == "EXCEEDED_DOMAIN_ACCOUNT_LIMIT"
    assert weak.value.code == "INVALID_DOMAIN_NAME"


def test_it_reports_every_password_problem_at_once(emulator_server):
    emulator_server.emulator.add_domain("example.com")

    with pytest.raises(RejectedError) as error:
        client_for(emulator_server).create_user("jane@example.com", password="short")

    assert error.value.codes == [
        "PW_SHORTER_THAN_MIN_LENGTH",
        "PW_NO_UPPERCASE",
        "PW_NO_DIGIT_NUMBER",
        "PW_NO_SPECIAL_CHAR",
    ]


def test_it_logs_in_once_and_keeps_one_connection_for_many_calls(any_dialect_server):
    any_dialect_server.emulator.add_domain("example.com")
    client = client_for(any_dialect_server)

    for number in range(25):
        client.create_user(f"user{number}@example.com", password=MAILBOX_PASSWORD)

    stats = any_dialect_server.emulator.stats()
    assert (client.login_count, stats["logins"]) == (1, 1)
    assert stats["calls"]["POST user"] == 25
    assert stats["connections"] == 1


@pytest.mark.parametrize("style", ["login_required", "redirect"])
def test_it_survives_forced_session_expiry_with_one_login_per_expiry(any_dialect_server, style):
    server = any_dialect_server
    server.emulator.add_domain("example.com")
    server.emulator.configure(expire_session_every=5, session_expiry_style=style)
    client = client_for(server)

    for number in range(20):
        client.create_user(f"user{number}@example.com", password=MAILBOX_PASSWORD)

    stats = server.emulator.stats()
    assert len(server.emulator.accounts()["users"]) == 20
    assert stats["sessions_expired"] >= 4
    assert client.login_count == stats["logins"] == 1 + stats["sessions_expired"]


def test_it_logs_in_again_after_the_idle_timeout(emulator_server):
    emulator_server.emulator.add_domain("example.com")
    emulator_server.emulator.configure(session_timeout=0.2)
    client = client_for(emulator_server)
    client.create_user("first@example.com", password=MAILBOX_PASSWORD)

    time.sleep(0.35)
    client.create_user("second@example.com", password=MAILBOX_PASSWORD)

    assert emulator_server.emulator.stats()["sessions_expired"] == 1
    assert client.login_count == 2
    assert emulator_server.emulator.accounts()["users"] == [
        "first@example.com",
        "second@example.com",
    ]


def test_it_logs_in_again_when_all_sessions_are_wiped(any_dialect_server):
    any_dialect_server.emulator.add_domain("example.com")
    client = client_for(any_dialect_server)
    client.create_user("first@example.com", password=MAILBOX_PASSWORD)

    assert any_dialect_server.emulator.expire_sessions() == 1
    client.delete_user("first@example.com")

    assert client.login_count == 2
    assert any_dialect_server.emulator.accounts()["users"] == []


class TestInjectedFaults:
    def test_a_500_is_transient_and_changes_nothing(self, any_dialect_server):
        server = any_dialect_server
        server.emulator.add_domain("example.com")
        server.emulator.add_fault(Fault(kind="status", status=500, route="user"))

        with pytest.raises(TransientError) as error:
            client_for(server).create_user("jane@example.com", password=MAILBOX_PASSWORD)

        assert error.value.code == "HTTP_500"
        assert server.emulator.accounts()["users"] == []

    def test_a_dropped_answer_after_the_effect_is_marked_ambiguous(self, any_dialect_server):
        server = any_dialect_server
        server.emulator.add_domain("example.com")
        server.emulator.add_fault(Fault(kind="drop", route="user", effect=True))

        with pytest.raises(TransientError) as error:
            client_for(server).create_user("jane@example.com", password=MAILBOX_PASSWORD)

        assert error.value.code == "CONNECTION_DROPPED"
        assert error.value.may_have_taken_effect is True
        assert server.emulator.accounts()["users"] == ["jane@example.com"]

    def test_a_late_answer_is_a_read_timeout_that_may_have_taken_effect(self, emulator_server):
        emulator_server.emulator.add_domain("example.com")
        emulator_server.emulator.add_fault(
            Fault(kind="delay", delay=0.6, route="user", effect=True)
        )

        with pytest.raises(TransientError) as error:
            client_for(emulator_server, timeout=0.2).create_user(
                "jane@example.com", password=MAILBOX_PASSWORD
            )

        assert error.value.code == "READ_TIMEOUT"
        assert error.value.may_have_taken_effect is True
        assert emulator_server.emulator.accounts()["users"] == ["jane@example.com"]

    @pytest.mark.parametrize("kind", ["non_json", "html"])
    def test_one_broken_answer_is_repeated_after_a_fresh_login(self, any_dialect_server, kind):
        server = any_dialect_server
        server.emulator.add_domain("example.com")
        server.emulator.add_fault(Fault(kind=kind, route="user"))
        client = client_for(server)

        client.create_user("jane@example.com", password=MAILBOX_PASSWORD)

        assert server.emulator.accounts()["users"] == ["jane@example.com"]
        assert server.emulator.stats()["calls"]["POST user"] == 2
        assert client.login_count == 2

    def test_a_broken_answer_after_the_effect_surfaces_as_a_possibly_own_duplicate(
        self, emulator_server
    ):
        emulator_server.emulator.add_domain("example.com")
        emulator_server.emulator.add_fault(Fault(kind="non_json", route="user", effect=True))

        with pytest.raises(RejectedError) as error:
            client_for(emulator_server).create_user("jane@example.com", password=MAILBOX_PASSWORD)

        assert error.value.code == "ALREADY_EXISTS"
        assert error.value.may_have_taken_effect is True
        assert emulator_server.emulator.stats()["created"] == {"user:jane@example.com": 1}

    def test_two_broken_answers_in_a_row_are_transient(self, emulator_server):
        emulator_server.emulator.add_domain("example.com")
        emulator_server.emulator.add_fault(Fault(kind="html", route="user", times=2))

        with pytest.raises(TransientError) as error:
            client_for(emulator_server).create_user("jane@example.com", password=MAILBOX_PASSWORD)

        assert error.value.code == "INVALID_RESPONSE"
        assert emulator_server.emulator.stats()["calls"]["POST user"] == 2

    def test_faults_can_be_injected_from_another_process_through_the_control_api(
        self, emulator_server
    ):
        emulator_server.emulator.add_domain("example.com")
        control = EmulatorControl(emulator_server.control_url)
        control.add_fault({"kind": "status", "status": 503, "method": "DELETE"})

        with pytest.raises(TransientError) as error:
            client_for(emulator_server).delete_domain("example.com")

        assert error.value.code == "HTTP_503"
        assert control.stats()["faults_injected"] == 1
        assert control.accounts()["domains"] == ["example.com"]


class TestOperatorProblems:
    def test_a_wrong_admin_password_is_an_authentication_error(self, any_dialect_server):
        client = IRedAdminClient(any_dialect_server.url, ADMIN_USERNAME, "Wrong-Passw0rd!")

        with pytest.raises(AuthenticationError) as error:
            client.create_domain("example.com")

        assert error.value.code == "INVALID_CREDENTIALS"
        assert "IREDADMIN_PASSWORD" in error.value.message
        assert any_dialect_server.emulator.stats()["failed_logins"] == 1
        assert any_dialect_server.emulator.accounts()["domains"] == []

    def test_a_host_outside_the_api_allow_list_is_told_so(self, emulator_server):
        emulator_server.emulator.configure(allowed_clients=["10.0.0.0/8"])

        with pytest.raises(AuthenticationError) as error:
            client_for(emulator_server).login()

        assert error.value.code == "NOT_AUTHORIZED"

    def test_a_global_admin_outside_its_ip_list_is_told_so(self, emulator_server):
        emulator_server.emulator.configure(global_admin_ips=["192.0.2.1"])

        with pytest.raises(AuthenticationError) as error:
            client_for(emulator_server).login()

        assert error.value.code == "NOT_ALLOWED_IP"

    def test_a_domain_admin_without_rights_gets_permission_denied(self, emulator_server):
        emulator_server.emulator.add_admin(
            "helper@admin.example.net", "Helper-Pass1!", global_admin=False
        )
        client = IRedAdminClient(emulator_server.url, "helper@admin.example.net", "Helper-Pass1!")

        with pytest.raises(AuthenticationError) as error:
            client.create_domain("example.com")

        assert error.value.code == "PERMISSION_DENIED"

    def test_a_disabled_api_is_reported_as_not_found(self, emulator_server):
        emulator_server.emulator.configure(api_enabled=False)

        with pytest.raises(AuthenticationError) as error:
            client_for(emulator_server).login()

        assert error.value.code == "API_NOT_FOUND"

    def test_a_server_that_is_down_is_transient_and_cannot_have_acted(self, make_emulator):
        server = make_emulator()
        url = server.url
        server.stop()

        with pytest.raises(TransientError) as error:
            IRedAdminClient(url, ADMIN_USERNAME, ADMIN_PASSWORD, timeout=2).create_domain(
                "example.com"
            )

        assert error.value.code == "CONNECTION_FAILED"
        assert error.value.may_have_taken_effect is False

    def test_a_forced_dialect_that_the_server_does_not_speak_is_refused(self, make_emulator):
        server = make_emulator(LEGACY)

        with pytest.raises(AuthenticationError) as error:
            client_for(server, dialect=CURRENT).login()

        assert error.value.code == "DIALECT_MISMATCH"


def test_clients_in_parallel_threads_log_in_once_each(emulator_server):
    emulator_server.emulator.add_domain("example.com")
    emulator_server.emulator.configure(latency=0.01)
    failures: list[BaseException] = []

    def work(thread_number: int) -> None:
        client = client_for(emulator_server)
        try:
            for number in range(15):
                client.create_user(
                    f"t{thread_number}-{number}@example.com", password=MAILBOX_PASSWORD
                )
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    stats = emulator_server.emulator.stats()
    assert failures == []
    assert len(emulator_server.emulator.accounts()["users"]) == 8 * 15
    assert stats["logins"] == 8
    assert stats["connections"] == 8
    assert 1 < stats["in_flight_max"] <= 8


def test_an_error_at_the_re_login_after_a_lost_answer_may_have_taken_effect(emulator_server):
    emulator_server.emulator.add_domain("example.com")
    client = client_for(emulator_server)
    client.login()
    emulator_server.emulator.add_fault(Fault(kind="html", route="user", effect=True))
    emulator_server.emulator.add_fault(Fault(kind="error", route="login", message="NOT_AUTHORIZED"))

    with pytest.raises(AuthenticationError) as error:
        client.create_user("jane@example.com", password=MAILBOX_PASSWORD)

    assert error.value.code == "NOT_AUTHORIZED"
    assert error.value.may_have_taken_effect is True
    assert emulator_server.emulator.accounts()["users"] == ["jane@example.com"]


def test_an_error_on_the_repeat_after_a_lost_answer_may_have_taken_effect(emulator_server):
    emulator_server.emulator.add_domain("example.com")
    emulator_server.emulator.add_fault(Fault(kind="html", route="user", effect=True))
    emulator_server.emulator.add_fault(Fault(kind="error", route="user", message="NOT_ALLOWED"))

    with pytest.raises(RejectedError) as error:
        client_for(emulator_server).create_user("jane@example.com", password=MAILBOX_PASSWORD)

    assert error.value.code == "NOT_ALLOWED"
    assert error.value.may_have_taken_effect is True
