"""Settings come from the environment; production refuses unsafe values at start-up.

Each case loads the settings in a fresh interpreter with a controlled environment (no `.env`),
because settings are read once per process.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from portal import env

PROJECT_DIR = Path(__file__).resolve().parents[2]
GOOD_SECRET = "k" * 20 + "0123456789abcdefghijklmnopqrstuvwxyz"

PRINT_SETTINGS = """
import json, django
django.setup()
from django.conf import settings
from portal.celery import app
from apps.iredadmin.config import admin_password
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "ENGINE": settings.DATABASES["default"]["ENGINE"],
    "DB_NAME": str(settings.DATABASES["default"]["NAME"]),
    "DB_OPTIONS": {k: v for k, v in settings.DATABASES["default"]["OPTIONS"].items()
                   if isinstance(v, (bool, int, str))},
    "BROKER": app.conf.broker_url,
    "TRANSPORT_OPTIONS": app.conf.broker_transport_options,
    "IREDADMIN": {k: v for k, v in settings.IREDADMIN.items() if k != "PASSWORD"},
    "PASSWORD_IN_SETTINGS": "PASSWORD" in settings.IREDADMIN,
    "IREDADMIN_PASSWORD_SET": bool(admin_password()),
    "SESSION_COOKIE_SECURE": settings.SESSION_COOKIE_SECURE,
    "SECURE_HSTS_SECONDS": settings.SECURE_HSTS_SECONDS,
}))
"""


def load_settings(tmp_path, **variables: str) -> subprocess.CompletedProcess:
    environment = {
        "PATH": os.environ["PATH"],
        "MAILDESK_ENV_FILE": "",
        "MAILDESK_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        **variables,
    }
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        cwd=PROJECT_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def loaded(tmp_path, **variables: str) -> dict:
    result = load_settings(tmp_path, **variables)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def refusal(tmp_path, **variables: str) -> str:
    result = load_settings(tmp_path, **variables)
    assert result.returncode != 0
    return result.stderr.strip().splitlines()[-1]


def test_the_embedded_defaults_need_no_server(tmp_path):
    values = loaded(tmp_path)

    assert values["DEBUG"] is True
    assert values["ENGINE"] == "django.db.backends.sqlite3"
    assert values["DB_NAME"] == str(tmp_path / "var" / "maildesk.sqlite3")
    assert "server_side_binding" not in values["DB_OPTIONS"]
    assert values["BROKER"] == "filesystem://"
    assert values["TRANSPORT_OPTIONS"]["data_folder_in"] == str(tmp_path / "var/broker/queue")
    assert (tmp_path / "var" / "broker" / "queue").is_dir()
    assert values["IREDADMIN"]["URL"] == "http://127.0.0.1:8091/iredadmin/api"
    assert values["IREDADMIN"]["DIALECT"] == "auto"


def test_database_url_switches_to_postgresql(tmp_path):
    values = loaded(tmp_path, DATABASE_URL="postgres://maildesk@db.example.net:5432/maildesk")

    assert values["ENGINE"] == "django.db.backends.postgresql"
    assert values["DB_NAME"] == "maildesk"
    assert values["DB_OPTIONS"]["server_side_binding"] is True


def test_celery_broker_url_switches_to_redis(tmp_path):
    values = loaded(tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:6379/3")

    assert values["BROKER"] == "redis://127.0.0.1:6379/3"
    assert values["TRANSPORT_OPTIONS"]["visibility_timeout"] == 3600
    # A publish to a broker that stopped answering must not wait forever.
    assert values["TRANSPORT_OPTIONS"]["socket_timeout"] == 10.0


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    message = refusal(tmp_path, DJANGO_DEBUG="false", DJANGO_ALLOWED_HOSTS="portal.example.net")

    assert "DJANGO_SECRET_KEY must be set" in message


@pytest.mark.parametrize(
    "secret",
    ["too-short", "django-insecure-" + "x" * 60, "a" * 60],
)
def test_production_refuses_a_weak_secret_key(tmp_path, secret):
    message = refusal(
        tmp_path,
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secret,
        DJANGO_ALLOWED_HOSTS="portal.example.net",
    )

    assert "DJANGO_SECRET_KEY must be set" in message


def test_production_refuses_to_start_without_allowed_hosts(tmp_path):
    message = refusal(tmp_path, DJANGO_DEBUG="false", DJANGO_SECRET_KEY=GOOD_SECRET)

    assert "DJANGO_ALLOWED_HOSTS" in message


def test_production_refuses_to_start_without_encryption_keys(tmp_path):
    message = refusal(
        tmp_path,
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=GOOD_SECRET,
        DJANGO_ALLOWED_HOSTS="portal.example.net",
    )

    assert "MAILDESK_ENCRYPTION_KEYS must be set" in message


def test_production_starts_with_a_real_secret_key_and_secure_cookies(tmp_path):
    values = loaded(
        tmp_path,
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=GOOD_SECRET,
        DJANGO_ALLOWED_HOSTS="portal.example.net",
        MAILDESK_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
    )

    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["SECURE_HSTS_SECONDS"] == 31536000


def test_the_admin_password_can_come_from_a_file(tmp_path):
    secret_file = tmp_path / "iredadmin-password"
    secret_file.write_text("From-A-File-1!\n")

    values = loaded(tmp_path, IREDADMIN_PASSWORD_FILE=str(secret_file))

    assert values["IREDADMIN_PASSWORD_SET"] is True
    # Read when a client is made, never loaded into the settings (the web process).
    assert values["PASSWORD_IN_SETTINGS"] is False


def test_debug_mode_refuses_a_public_host(tmp_path):
    message = refusal(tmp_path, DJANGO_ALLOWED_HOSTS="portal.example.net")

    assert "set DJANGO_DEBUG=false for a deployment" in message


def test_the_emulator_port_moves_the_default_iredadmin_url(tmp_path):
    values = loaded(tmp_path, MAILDESK_EMULATOR_PORT="18091")

    assert values["IREDADMIN"]["URL"] == "http://127.0.0.1:18091/iredadmin/api"


PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": GOOD_SECRET,
    "DJANGO_ALLOWED_HOSTS": "portal.example.net",
    "MAILDESK_ENCRYPTION_KEYS": "Jb6nHhdiKwS6cIq2l5sX5s0XvC5yW3mU1e7m6fQJg4s=",
    "MAILDESK_AUDIT_KEY": "a-random-secret-kept-outside-the-database",
    "MAILDESK_PROXY_COUNT": "1",
}


# Production's own services: with these, maildesk.W001-W005 have nothing to say.
PRODUCTION_SERVICES = {
    "DATABASE_URL": "postgres://maildesk@db.example.net/maildesk",
    "CELERY_BROKER_URL": "redis://redis.example.net:6379/0",
    "IREDADMIN_URL": "https://mail.example.net/iredadmin/api",
}


def deploy_check(tmp_path, **variables: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=PROJECT_DIR,
        env={
            "PATH": os.environ["PATH"],
            "MAILDESK_ENV_FILE": "",
            "MAILDESK_VAR_DIR": str(tmp_path / "var"),
            **PRODUCTION,
            **variables,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_deploy_check_passes_for_a_production_configuration(tmp_path):
    result = deploy_check(tmp_path, **PRODUCTION_SERVICES)

    assert result.returncode == 0, result.stderr


def test_the_deploy_check_names_every_development_default_left_in_production(tmp_path):
    result = deploy_check(
        tmp_path, IREDADMIN_VERIFY_TLS="false", MAILDESK_AUDIT_KEY="", MAILDESK_PROXY_COUNT="0"
    )

    assert result.returncode != 0
    for warning in ("W001", "W002", "W003", "W004", "W005", "W006"):
        assert f"maildesk.{warning}" in result.stderr


def test_the_settings_name_a_wrong_value(tmp_path):
    assert "DJANGO_DEBUG must be true or false" in refusal(tmp_path, DJANGO_DEBUG="maybe")
    assert "IREDADMIN_DIALECT must be one of" in refusal(tmp_path, IREDADMIN_DIALECT="v2")
    assert "IREDADMIN_TIMEOUT must be a number" in refusal(tmp_path, IREDADMIN_TIMEOUT="soon")


class TestEnvironmentReaders:
    def test_booleans(self, monkeypatch):
        monkeypatch.setenv("FLAG", "Yes")
        assert env.env_bool("FLAG", False) is True
        monkeypatch.setenv("FLAG", "off")
        assert env.env_bool("FLAG", True) is False
        monkeypatch.setenv("FLAG", "")
        assert env.env_bool("FLAG", True) is True

    def test_numbers_with_a_minimum(self, monkeypatch):
        monkeypatch.setenv("COUNT", "3")
        assert env.env_int("COUNT", 1, minimum=0) == 3
        monkeypatch.setenv("COUNT", "-1")
        with pytest.raises(ImproperlyConfigured, match="COUNT must be at least 0"):
            env.env_int("COUNT", 1, minimum=0)

    def test_lists(self, monkeypatch):
        monkeypatch.setenv("HOSTS", " a.example , ,b.example")
        assert env.env_list("HOSTS") == ["a.example", "b.example"]
        monkeypatch.delenv("HOSTS")
        assert env.env_list("HOSTS", ["default"]) == ["default"]

    def test_secrets_from_a_file_or_the_variable_but_not_both(self, monkeypatch, tmp_path):
        secret_file = tmp_path / "secret"
        secret_file.write_text("s3cret\n")
        monkeypatch.setenv("TOKEN_FILE", str(secret_file))
        assert env.env_secret("TOKEN") == "s3cret"
        monkeypatch.setenv("TOKEN", "direct")
        with pytest.raises(ImproperlyConfigured, match="not both"):
            env.env_secret("TOKEN")
        monkeypatch.delenv("TOKEN")
        monkeypatch.setenv("TOKEN_FILE", str(tmp_path / "missing"))
        with pytest.raises(ImproperlyConfigured, match="cannot be read"):
            env.env_secret("TOKEN")


def check_ids(output: str) -> list[str]:
    """The ids of the issues `manage.py check` printed, e.g. ["maildesk.W006"]."""
    return re.findall(r"^\?: \(([\w.]+)\) ", output, flags=re.MULTILINE)


@pytest.mark.parametrize("proxy_count", ["0", ""], ids=["zero", "unset"])
def test_w006_fires_alone_when_production_expects_a_proxy_but_counts_none(tmp_path, proxy_count):
    result = deploy_check(tmp_path, **PRODUCTION_SERVICES, MAILDESK_PROXY_COUNT=proxy_count)

    assert result.returncode != 0
    assert check_ids(result.stderr) == ["maildesk.W006"]


# Proxy count 1 is the production configuration of the deploy check that passes, above.
def test_w006_is_silent_once_the_proxy_count_is_set(tmp_path):
    result = deploy_check(tmp_path, **PRODUCTION_SERVICES, MAILDESK_PROXY_COUNT="2")

    assert result.returncode == 0, result.stderr
    assert "maildesk.W006" not in result.stderr


def test_w006_is_silent_when_no_proxy_is_expected(tmp_path):
    # Debug mode (runserver) trusts no X-Forwarded-Proto, so it expects no proxy in front.
    result = deploy_check(
        tmp_path, **PRODUCTION_SERVICES, DJANGO_DEBUG="true", DJANGO_ALLOWED_HOSTS="localhost",
        MAILDESK_PROXY_COUNT="0",
    )  # fmt: skip

    issues = check_ids(result.stderr)
    assert "security.W018" in issues  # the checks ran: DEBUG on in a deployment
    assert "maildesk.W006" not in issues
