"""Every row of docs/reliability.md's error matrix, asserted in both dialects.

The table is the written promise; this test reads it, injects each condition into the
emulator (or the network) for one create-mailbox request, runs up to two attempts as the
worker would, and checks that Maildesk did what the row says. A row without an injection here,
or an injection without a row, fails the test: the table and the code cannot drift apart.
"""

import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.iredadmin.client import forget_login_refusals
from apps.iredadmin.config import reset_thread_client
from apps.iredadmin.emulator import CURRENT, LEGACY, Fault
from apps.provisioning import services
from apps.provisioning.execution import request_execute
from apps.provisioning.models import ProvisioningRequest
from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME

pytestmark = pytest.mark.django_db

MATRIX = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
ADDRESS = "jane@example.com"
SERVER_EXCEPTION = "OperationalError(2006, 'MySQL server has gone away')"


def read_matrix() -> list[tuple[str, str, str]]:
    text = MATRIX.read_text()
    table = text.split("<!-- error-matrix -->")[1].split("<!-- /error-matrix -->")[0]
    rows = []
    for line in table.strip().splitlines()[2:]:
        condition, current, legacy = (cell.strip() for cell in line.strip("|").split("|"))
        rows.append((condition, current, legacy))
    return rows


# --- How each condition is brought about --------------------------------------------------------
# An injection prepares attempt 1; it may return an undo, run before attempt 2 (the operator
# fixing the problem, or the network coming back).

Injection = Callable[["Setup"], Callable[[], None] | None]


class Setup:
    def __init__(self, server, settings) -> None:
        self.server = server
        self.emulator = server.emulator
        self.settings = settings

    def fault(self, **fields: object) -> None:
        self.emulator.add_fault(Fault(route="user", method="POST", **fields))

    def point_at(self, url: str, timeout: float) -> Callable[[], None]:
        """Send attempt 1 elsewhere; the undo points back at the emulator."""
        self.settings.IREDADMIN = {**self.settings.IREDADMIN, "URL": url, "TIMEOUT": timeout}
        reset_thread_client()

        def back() -> None:
            self.settings.IREDADMIN = {
                **self.settings.IREDADMIN, "URL": self.server.url, "TIMEOUT": 2.0
            }  # fmt: skip
            reset_thread_client()

        return back


def refusal(code: str) -> Injection:
    return lambda setup: setup.fault(kind="error", message=code)


def at_login(code: str) -> Injection:
    def inject(setup: Setup) -> None:
        setup.emulator.add_fault(Fault(kind="error", route="login", message=code))

    return inject


def fault(**fields: object) -> Injection:
    return lambda setup: setup.fault(**fields)


def configured(**knobs: object) -> Injection:
    def inject(setup: Setup) -> Callable[[], None]:
        before = {name: setup.emulator.configure()[name] for name in knobs}
        setup.emulator.configure(**knobs)
        return lambda: setup.emulator.configure(**before)

    return inject


def pre_existing(setup: Setup) -> None:
    setup.emulator.add_mailbox(ADDRESS, "Someone-Elses-1!")


def session_expired_redirect(setup: Setup) -> None:
    setup.emulator.configure(session_expiry_style="redirect")
    setup.fault(kind="expire")


def connection_refused(setup: Setup) -> Callable[[], None]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return setup.point_at(f"http://127.0.0.1:{port}/iredadmin/api", 2.0)


def connect_timeout(setup: Setup) -> Callable[[], None]:
    return setup.point_at(f"http://127.0.0.1:{setup.full_backlog}/iredadmin/api", 0.5)


def read_timeout(effect: bool) -> Injection:
    def inject(setup: Setup) -> Callable[[], None]:
        setup.settings.IREDADMIN = {**setup.settings.IREDADMIN, "TIMEOUT": 0.5}
        reset_thread_client()
        setup.fault(kind="drop", delay=1.0, effect=effect)

        def patient_again() -> None:
            setup.settings.IREDADMIN = {**setup.settings.IREDADMIN, "TIMEOUT": 2.0}
            reset_thread_client()

        return patient_again

    return inject


INJECTIONS: dict[str, Injection] = {
    "`ALREADY_EXISTS` (the address existed before)": pre_existing,
    **{
        f"`{code}`": refusal(code)
        for code in [
            "INVALID_DOMAIN_NAME",
            "INVALID_MAIL",
            "NO_SUCH_ACCOUNT",
            "NOT_ALLOWED",
            "EXCEEDED_DOMAIN_ACCOUNT_LIMIT",
            "EXCEEDED_DOMAIN_QUOTA_SIZE",
            "INVALID_QUOTA_SIZE",
            "INVALID_PASSWORD_SCHEME",
            "PW_EMPTY",
            "PW_NON_ASCII",
            "PW_SHORTER_THAN_MIN_LENGTH",
            "PW_GREATER_THAN_MAX_LENGTH",
            "PW_NO_LETTER",
            "PW_NO_UPPERCASE",
            "PW_NO_DIGIT_NUMBER",
            "PW_NO_SPECIAL_CHAR",
            "PERMISSION_DENIED_UPDATE_GLOBAL_ADMIN_PROFILE",
            "ERROR_WHILE_QUERYING_DB",
            "PERMISSION_DENIED",
            "NOT_AUTHORIZED",
        ]
    },
    "`PW_NO_UPPERCASE,PW_NO_SPECIAL_CHAR` (several joined)": refusal(
        "PW_NO_UPPERCASE,PW_NO_SPECIAL_CHAR"
    ),
    "an unknown code": refusal("SOME_CODE_OF_A_NEWER_RELEASE"),
    "a failure without a message": refusal(""),
    "a server exception's repr": refusal(SERVER_EXCEPTION),
    "`INVALID_CREDENTIALS` at login": at_login("INVALID_CREDENTIALS"),
    "`INVALID_USERNAME` at login": at_login("INVALID_USERNAME"),
    "`EMPTY_PASSWORD` at login": at_login("EMPTY_PASSWORD"),
    "303 to `login?msg=NOT_ALLOWED_IP` at login": configured(global_admin_ips=["192.0.2.1"]),
    "HTTP 404 (API disabled, wrong URL)": configured(api_enabled=False),
    "HTTP 403 from a proxy": fault(kind="status", status=403),
    "`LOGIN_REQUIRED` (session expired)": fault(kind="expire"),
    "303 to `login?msg=SESSION_EXPIRED`": session_expired_redirect,
    "an HTML page instead of JSON, once": fault(kind="html"),
    "a non-JSON 200, once": fault(kind="non_json"),
    "HTTP 500": fault(kind="status", status=500),
    "HTTP 502": fault(kind="status", status=502),
    "HTTP 503": fault(kind="status", status=503),
    "HTTP 429": fault(kind="status", status=429),
    "an HTML page, twice": fault(kind="html", times=2),
    "a non-JSON 200, twice": fault(kind="non_json", times=2),
    "connection refused": connection_refused,
    "connect timeout": connect_timeout,
    "read timeout, nothing done": read_timeout(effect=False),
    "connection dropped, nothing done": fault(kind="drop"),
    "read timeout after the server created it": read_timeout(effect=True),
    "connection dropped after the server created it": fault(kind="drop", effect=True),
    "HTTP 500 after the server created it": fault(kind="status", status=500, effect=True),
    "an HTML page after the server created it": fault(kind="html", effect=True),
}

CASES = [
    pytest.param(condition, dialect, decision, id=f"{dialect}: {condition}")
    for condition, current, legacy in read_matrix()
    for dialect, decision in ((CURRENT, current), (LEGACY, legacy))
]


def test_every_row_of_the_table_has_an_injection_and_every_injection_a_row():
    conditions = {condition for condition, _, _ in read_matrix()}

    assert conditions == set(INJECTIONS)


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: new connections wait for the SYN that never comes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


@pytest.mark.parametrize(("condition", "dialect", "decision"), CASES)
def test_the_matrix(condition, dialect, decision, alice, bob, make_emulator, settings,
                    full_backlog):  # fmt: skip
    server = make_emulator(dialect)
    server.emulator.add_domain("example.com")
    settings.IREDADMIN = {
        **settings.IREDADMIN, "URL": server.url, "USERNAME": ADMIN_USERNAME,
        "PASSWORD": ADMIN_PASSWORD, "DIALECT": "auto", "TIMEOUT": 2.0,
    }  # fmt: skip
    reset_thread_client()
    setup = Setup(server, settings)
    setup.full_backlog = full_backlog
    request = services.request_submit(
        requester=alice, kind="create_mailbox", target=ADDRESS, parameters={"name": "Jane"},
        password="Matrix-Pa55word!", ticket="HD-1", reason="matrix",
    )  # fmt: skip
    services.request_approve(request=request, actor=bob)
    logins_before = server.emulator.stats()["logins"]
    undo = INJECTIONS[condition](setup)

    request_execute(request_id=request.pk)
    first = ProvisioningRequest.objects.get(pk=request.pk)
    if undo:
        undo()
    forget_login_refusals()  # the refusal window has passed
    ProvisioningRequest.objects.filter(pk=request.pk).update(not_before=timezone.now())
    request_execute(request_id=request.pk)
    final = ProvisioningRequest.objects.get(pk=request.pk)
    reset_thread_client()

    created = server.emulator.stats()["created"].get(f"user:{ADDRESS}", 0)
    reconciled = AuditEvent.objects.filter(
        request_code=request.code, action="api.succeeded", details__reconciled=True
    ).exists()
    outcome = (first.status, final.status, created, reconciled)
    assert created <= 1, f"created {created} times"
    if decision == "fail":
        assert final.status == "failed", outcome
        code = re.fullmatch(r"`([A-Z_,]+)`.*", condition)
        if code:  # a refusal: nothing was created, and the server's code is kept verbatim
            assert created == 0, outcome
            assert final.result_code == code.group(1), final.result_code
        assert final.result_message, "a failure always says why"
    elif decision == "retry":
        assert (first.status, first.needs_operator) == ("queued", False), outcome
        assert (final.status, created, reconciled) == ("succeeded", 1, False), outcome
    elif decision == "wait":
        assert (first.status, first.needs_operator) == ("queued", True), outcome
        assert (final.status, created) == ("succeeded", 1), outcome
    elif decision == "relogin":
        assert (first.status, created) == ("succeeded", 1), outcome
        assert server.emulator.stats()["logins"] - logins_before == 2
    elif decision == "reconcile":
        assert (final.status, created, reconciled) == ("succeeded", 1, True), outcome
    else:
        pytest.fail(f"unknown decision {decision!r} in docs/reliability.md")
