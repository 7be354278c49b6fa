"""scripts/init_env.py: the `.env` that `make run` writes on first use."""

import runpy
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from dotenv import dotenv_values

from apps.iredadmin.validators import password_policy_violations

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "init_env.py"


@pytest.fixture
def init_env(tmp_path, monkeypatch):
    module = runpy.run_path(str(SCRIPT))
    env_file = tmp_path / ".env"
    monkeypatch.setitem(module["main"].__globals__, "ENV_FILE", env_file)
    return module["main"], env_file


def test_it_writes_random_secrets_readable_only_by_the_owner(init_env):
    main, env_file = init_env

    assert main() == 0

    values = dotenv_values(env_file)
    assert set(values) == {
        "DJANGO_SECRET_KEY",
        "IREDADMIN_USERNAME",
        "IREDADMIN_PASSWORD",
        "MAILDESK_DEMO_PASSWORD",
        "MAILDESK_ENCRYPTION_KEYS",
        "MAILDESK_AUDIT_KEY",
    }
    assert len(values["DJANGO_SECRET_KEY"]) >= 50
    assert len(values["MAILDESK_DEMO_PASSWORD"]) >= 12
    Fernet(values["MAILDESK_ENCRYPTION_KEYS"].encode())  # a usable key
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


def test_it_never_changes_existing_values_and_adds_missing_ones(init_env):
    main, env_file = init_env
    env_file.write_text("DJANGO_SECRET_KEY=mine\nDATABASE_URL=postgres://db/x")

    main()
    first = env_file.read_text()
    main()

    values = dotenv_values(env_file)
    assert values["DJANGO_SECRET_KEY"] == "mine"
    assert values["DATABASE_URL"] == "postgres://db/x"
    assert "IREDADMIN_PASSWORD" in values
    assert env_file.read_text() == first


def test_two_runs_on_fresh_machines_get_different_secrets(init_env, tmp_path, monkeypatch):
    main, env_file = init_env
    main()
    first = dotenv_values(env_file)
    env_file.unlink()
    main()

    assert dotenv_values(env_file)["DJANGO_SECRET_KEY"] != first["DJANGO_SECRET_KEY"]
    assert dotenv_values(env_file)["IREDADMIN_PASSWORD"] != first["IREDADMIN_PASSWORD"]


def test_the_generated_admin_password_would_pass_the_server_policy(init_env):
    main, env_file = init_env
    main()

    assert password_policy_violations(dotenv_values(env_file)["IREDADMIN_PASSWORD"]) == []
