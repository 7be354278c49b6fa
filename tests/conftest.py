"""Fixtures shared by the whole suite.

Real services: tests that need PostgreSQL or Redis take the `postgres_url` / `redis_url`
fixtures. When a service is missing they are skipped on a developer's machine, and fail when
MAILDESK_REQUIRE_SERVICES=1 (CI), so CI can never pass by skipping them.
"""

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from celery import current_app
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from apps.accounts.models import Delegation, MailDomain
from apps.iredadmin.client import forget_login_refusals
from apps.iredadmin.config import reset_thread_client
from apps.iredadmin.emulator import CURRENT, LEGACY, Emulator
from apps.iredadmin.emulator_http import EmulatorServer

ADMIN_USERNAME = "postmaster@admin.example.net"
ADMIN_PASSWORD = "Adm1n-Secret!"
USER_PASSWORD = "Portal-Passw0rd!"


def _service_unavailable(message: str) -> None:
    if os.environ.get("MAILDESK_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (MAILDESK_REQUIRE_SERVICES=1: services are required)")
    pytest.skip(message)


def require_postgresql(why: str) -> None:
    """Skip unless the suite runs on PostgreSQL (fail instead where services are required)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        _service_unavailable(f"{why}: run the suite with DATABASE_URL=postgres://... (CI does)")


@pytest.fixture(autouse=True)
def _no_login_refusal_remembered() -> Iterator[None]:
    # A refused login makes every client of the process wait (client.py); tests start afresh.
    forget_login_refusals()
    yield
    forget_login_refusals()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    # The production hasher is deliberately slow; tests hash hundreds of passwords.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("MAILDESK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        _service_unavailable(f"Redis is not reachable at {url}: {exc}")
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL server URL whose role may create databases."""
    url = os.environ.get(
        "MAILDESK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error as exc:
        _service_unavailable(f"PostgreSQL is not reachable at {url}: {exc}")
    return url


@pytest.fixture
def make_emulator() -> Iterator:
    """Start emulators on free ports: `make_emulator(dialect="legacy")` -> EmulatorServer.

    Each has the global admin ADMIN_USERNAME / ADMIN_PASSWORD; all stop after the test.
    """
    servers: list[EmulatorServer] = []

    def start(dialect: str = CURRENT, **emulator_options: object) -> EmulatorServer:
        emulator = Emulator(dialect=dialect, **emulator_options)
        emulator.add_admin(ADMIN_USERNAME, ADMIN_PASSWORD)
        server = EmulatorServer(emulator).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def emulator_server(make_emulator) -> EmulatorServer:
    """A current-dialect emulator on a real socket."""
    return make_emulator(CURRENT)


@pytest.fixture(params=[CURRENT, LEGACY])
def any_dialect_server(request, make_emulator) -> EmulatorServer:
    """The same test once against each dialect."""
    return make_emulator(request.param)


# --- Database ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker) -> Iterator[None]:
    """Transactional tests end by emptying every table with TRUNCATE (Django's flush), which
    the audit log's TRUNCATE guard on PostgreSQL refuses. The test database lets TRUNCATE
    through; the row-level guards (no UPDATE, no DELETE) stay on, and a test proves the
    TRUNCATE guard itself (tests/audit/test_append_only.py)."""
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_no_truncate"
                )
    yield
    # The live server's threads (session-scoped, stopped after this) may still hold a
    # connection, and a test database in use cannot be dropped.
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


# --- Celery: the suite publishes to an in-memory broker --------------------------------------


def use_broker(url: str) -> None:
    """Point the portal's Celery app at another broker (tests only)."""
    current_app.conf.broker_url = url
    current_app.conf.broker_transport_options = {}
    # Forget connections made to the previous broker.
    current_app._pool = None
    current_app.amqp._producer_pool = None


@pytest.fixture(autouse=True, scope="session")
def _memory_broker() -> None:
    # Never the developer's var/broker: a running `make run` worker would execute test work.
    use_broker("memory://")


@pytest.fixture
def published() -> Callable[[], list[tuple[str, list, str | None]]]:
    """Drain the in-memory broker: [(task name, args, eta)] published since the last drain."""

    def drain() -> list[tuple[str, list, str | None]]:
        messages = []
        with current_app.connection_for_read() as connection:
            queue = connection.SimpleQueue("celery", no_ack=True)
            while True:
                try:
                    message = queue.get_nowait()
                except queue.Empty:
                    break
                messages.append(
                    (message.headers["task"], message.payload[0], message.headers.get("eta"))
                )
            queue.close()
        return messages

    drain()  # start empty
    return drain


# --- People (STYLE.md: alice requests in example.com, bob approves there, charlie has nothing) --


def make_user(
    username: str,
    *,
    domains: dict[MailDomain, list[str]] | None = None,
    groups: tuple[str, ...] = (),
    superuser: bool = False,
):
    user = get_user_model().objects.create_user(
        username, password=USER_PASSWORD, is_superuser=superuser, is_staff=superuser
    )
    for domain, roles in (domains or {}).items():
        for role in roles:
            Delegation.objects.create(user=user, domain=domain, role=role)
    user.groups.add(*Group.objects.filter(name__in=groups))
    return user


REQUESTER, APPROVER = Delegation.Role.REQUESTER, Delegation.Role.APPROVER


@pytest.fixture
def example_com(db) -> MailDomain:
    return MailDomain.objects.create(name="example.com")


@pytest.fixture
def other_org(db) -> MailDomain:
    return MailDomain.objects.create(name="other.org")


@pytest.fixture
def alice(example_com):
    """Help-desk agent: requests in example.com, and may request new domains."""
    return make_user("alice", domains={example_com: [REQUESTER]}, groups=("New-domain requesters",))


@pytest.fixture
def bob(example_com):
    """Mail team lead: approves in example.com, and approves new domains."""
    return make_user("bob", domains={example_com: [APPROVER]}, groups=("New-domain approvers",))


@pytest.fixture
def dave(example_com):
    """Both requester and approver in example.com: may approve others' requests, not his own."""
    return make_user("dave", domains={example_com: [REQUESTER, APPROVER]})


@pytest.fixture
def carol(other_org):
    """Requester and approver, but of other.org only: example.com is outside her scope."""
    return make_user("carol", domains={other_org: [REQUESTER, APPROVER]})


@pytest.fixture
def charlie(db):
    """Signed in, no role anywhere."""
    return make_user("charlie")


@pytest.fixture
def audrey(db):
    """Auditor: reads everything, changes nothing."""
    return make_user("audrey", groups=("Auditors",))


@pytest.fixture
def root(db):
    """Portal admin (superuser)."""
    return make_user("root", superuser=True)


# --- The worker's iRedAdmin-Pro: an emulator on a real socket --------------------------------


@pytest.fixture
def mail_server(settings, make_emulator) -> Iterator[EmulatorServer]:
    """An emulator holding example.com and other.org, set as the portal's IREDADMIN_URL.

    Execution in the test process uses this thread's client, which is reset around each test.
    """
    server = make_emulator(CURRENT)
    server.emulator.add_domain("example.com")
    server.emulator.add_domain("other.org")
    settings.IREDADMIN = {
        **settings.IREDADMIN,
        "URL": server.url,
        "USERNAME": ADMIN_USERNAME,
        "PASSWORD": ADMIN_PASSWORD,
        "DIALECT": "auto",
        "TIMEOUT": 2.0,
    }
    reset_thread_client()
    yield server
    reset_thread_client()


# --- A real worker process on Redis and the shared PostgreSQL test database ------------------

PROJECT_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture
def shared_database_url(postgres_url) -> str:
    """The test database, as a URL another process can open (needs transactional tests)."""
    from django.db import connection

    require_postgresql("the worker process must share the test database")
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def start_worker(shared_database_url, redis_url, mail_server, settings, tmp_path):
    """Publishing goes to Redis (a queue of this test's own) from now on; calling the returned
    function starts `celery -A portal worker` as the Procfile runs it, and returns its log."""
    queue = f"maildesk-test-{uuid.uuid4().hex[:10]}"
    key = Fernet.generate_key().decode()
    settings.MAILDESK_ENCRYPTION_KEYS = [key]
    use_broker(redis_url)
    current_app.conf.task_default_queue = queue
    processes: list[subprocess.Popen] = []
    environment = {
        **os.environ,
        "MAILDESK_ENV_FILE": "",
        "MAILDESK_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": shared_database_url,
        "CELERY_BROKER_URL": redis_url,
        "MAILDESK_QUEUE": queue,
        "IREDADMIN_URL": mail_server.url,
        "IREDADMIN_USERNAME": ADMIN_USERNAME,
        "IREDADMIN_PASSWORD": ADMIN_PASSWORD,
        "MAILDESK_ENCRYPTION_KEYS": key,
        "MAILDESK_RETRY_BASE_SECONDS": "0.2",
        "MAILDESK_RETRY_MAX_SECONDS": "1",
    }

    def start() -> Path:
        log = tmp_path / f"worker-{len(processes)}.log"
        command = [
            sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "threads",
            "--concurrency", "2", "--loglevel", "DEBUG", "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        with log.open("w") as output:
            process = subprocess.Popen(
                command, cwd=PROJECT_DIR, env=environment, stdout=output, stderr=subprocess.STDOUT
            )
        processes.append(process)
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        return log

    start.queue = queue
    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=30)
    use_broker("memory://")
    current_app.conf.task_default_queue = "celery"


# --- Debian's Chromium, driven by Playwright ----------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser() -> Iterator:
    if not shutil.which(CHROMIUM):
        _service_unavailable(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # around it are plain synchronous code, which Django would otherwise refuse.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    (PROJECT_DIR / "test-artifacts" / "browser").mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
