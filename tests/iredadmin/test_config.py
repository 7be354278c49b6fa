"""Clients built from settings, one per worker thread."""

import threading

import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.iredadmin.config import (
    admin_password,
    client_from_settings,
    reset_thread_client,
    thread_client,
)


@pytest.fixture
def configured(settings):
    settings.IREDADMIN = {
        **settings.IREDADMIN,
        "URL": "https://mail.example.com/iredadmin/api",
        "USERNAME": "postmaster@example.com",
        "PASSWORD": "Adm1n-Secret!",
    }
    reset_thread_client()
    yield settings
    reset_thread_client()


def test_each_thread_gets_its_own_client_and_keeps_it(configured):
    mine = thread_client()
    others: list = []
    worker = threading.Thread(target=lambda: others.append(thread_client()))
    worker.start()
    worker.join()

    assert thread_client() is mine
    assert others[0] is not mine


def test_a_reset_gives_the_thread_a_fresh_client(configured):
    first = thread_client()

    reset_thread_client()

    assert thread_client() is not first


def test_the_password_comes_from_the_environment_when_not_in_the_settings(
    settings, monkeypatch, tmp_path
):
    settings.IREDADMIN = {k: v for k, v in settings.IREDADMIN.items() if k != "PASSWORD"}
    secret = tmp_path / "password"
    secret.write_text("From-The-File-1!\n")
    monkeypatch.delenv("IREDADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("IREDADMIN_PASSWORD_FILE", str(secret))

    assert admin_password() == "From-The-File-1!"
    monkeypatch.setenv("IREDADMIN_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="IREDADMIN_PASSWORD_FILE"):
        client_from_settings()


def test_settings_that_make_no_client_are_a_value_error(configured):
    configured.IREDADMIN = {**configured.IREDADMIN, "URL": "mail.example.com"}

    with pytest.raises(ValueError, match="base_url"):
        client_from_settings()
