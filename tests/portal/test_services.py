"""The production switches work against the real services: PostgreSQL and Redis.

These tests need the services: skipped on a machine without them, failing in CI
(MAILDESK_REQUIRE_SERVICES=1). The worker test with the filesystem broker needs nothing.
"""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

PROJECT_DIR = Path(__file__).resolve().parents[2]


def environment(tmp_path, **variables: str) -> dict[str, str]:
    return {
        **os.environ,
        "MAILDESK_ENV_FILE": "",
        "MAILDESK_VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": "",
        "CELERY_BROKER_URL": "",
        **variables,
    }


def test_migrations_run_on_a_fresh_postgresql_database(tmp_path, postgres_url):
    name = f"maildesk_migrate_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database_url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        result = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=PROJECT_DIR,
            env=environment(tmp_path, DATABASE_URL=database_url),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
        with psycopg.connect(database_url) as connection:
            applied = connection.execute("SELECT count(*) FROM django_migrations").fetchone()[0]
        assert applied > 10
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def wait_for_worker(tmp_path, **variables: str) -> str:
    """Start `celery -A portal worker` as the Procfile does; return its log once ready."""
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "portal",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                "2",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=PROJECT_DIR,
            env=environment(tmp_path, **variables),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if " ready." in log_path.read_text():
                break
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return log_path.read_text()


def test_the_worker_starts_on_the_embedded_filesystem_broker(tmp_path):
    log = wait_for_worker(tmp_path)

    assert " ready." in log, log
    assert "filesystem://" in log


def test_the_worker_starts_on_redis(tmp_path, redis_url):
    log = wait_for_worker(tmp_path, CELERY_BROKER_URL=redis_url)

    assert " ready." in log, log
    assert "redis://" in log
    assert "Connected to redis://" in log


@pytest.mark.django_db
def test_the_suite_runs_on_the_configured_database():
    from django.db import connection

    expected = (
        "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else ("sqlite")
    )
    assert connection.vendor == expected
