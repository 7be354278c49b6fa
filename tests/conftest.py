"""Fixtures shared by the whole suite.

Real services: tests that need PostgreSQL or Redis take the `postgres_url` / `redis_url`
fixtures. When a service is missing they are skipped on a developer's machine, and fail when
MAILDESK_REQUIRE_SERVICES=1 (CI), so CI can never pass by skipping them.
"""

import os
from collections.abc import Iterator

import psycopg
import pytest
import redis

from apps.iredadmin.emulator import CURRENT, LEGACY, Emulator
from apps.iredadmin.emulator_http import EmulatorServer

ADMIN_USERNAME = "postmaster@admin.example.net"
ADMIN_PASSWORD = "Adm1n-Secret!"


def _service_unavailable(message: str) -> None:
    if os.environ.get("MAILDESK_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (MAILDESK_REQUIRE_SERVICES=1: services are required)")
    pytest.skip(message)


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
