"""`manage.py seed_demo`: the demo accounts `make run` prints."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db

DEMO_PASSWORD = "demo-Passw0rd-123"


def test_it_creates_the_demo_accounts_and_prints_how_to_log_in(settings, monkeypatch):
    settings.DEBUG = True
    monkeypatch.setenv("MAILDESK_DEMO_PASSWORD", DEMO_PASSWORD)
    out = StringIO()

    call_command("seed_demo", "--url", "http://127.0.0.1:9000/", stdout=out)

    users = get_user_model().objects.order_by("username")
    assert [u.username for u in users] == ["admin", "alice", "audrey", "bob"]
    assert all(u.check_password(DEMO_PASSWORD) for u in users)
    assert [u.username for u in users if u.is_superuser] == ["admin"]
    assert "http://127.0.0.1:9000/" in out.getvalue()
    assert DEMO_PASSWORD in out.getvalue()


def test_running_it_again_keeps_one_account_each_with_the_current_password(settings, monkeypatch):
    settings.DEBUG = True
    monkeypatch.setenv("MAILDESK_DEMO_PASSWORD", DEMO_PASSWORD)
    call_command("seed_demo", stdout=StringIO())
    monkeypatch.setenv("MAILDESK_DEMO_PASSWORD", "demo-Another-456")

    call_command("seed_demo", stdout=StringIO())

    assert get_user_model().objects.count() == 4
    assert get_user_model().objects.get(username="alice").check_password("demo-Another-456")


def test_it_refuses_to_run_in_production(settings, monkeypatch):
    settings.DEBUG = False
    monkeypatch.setenv("MAILDESK_DEMO_PASSWORD", DEMO_PASSWORD)

    with pytest.raises(CommandError, match="development only"):
        call_command("seed_demo", stdout=StringIO())
    assert get_user_model().objects.count() == 0


def test_it_refuses_a_missing_or_short_password(settings, monkeypatch):
    settings.DEBUG = True
    monkeypatch.setenv("MAILDESK_DEMO_PASSWORD", "short")

    with pytest.raises(CommandError, match="MAILDESK_DEMO_PASSWORD"):
        call_command("seed_demo", stdout=StringIO())
    assert get_user_model().objects.count() == 0
