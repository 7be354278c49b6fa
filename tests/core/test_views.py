"""Login, the dashboard behind it, logout, and the health check."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

PASSWORD = "Portal-Passw0rd!"


@pytest.fixture
def alice():
    return get_user_model().objects.create_user("alice", password=PASSWORD)


def test_the_dashboard_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get(reverse("core:dashboard"))

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next=/"


def test_the_login_page_uses_bootstrap_served_by_the_portal_itself(client):
    response = client.get(reverse("login"))
    html = response.content.decode()

    assert response.status_code == 200
    assert 'href="/static/bootstrap/css/bootstrap.min.css"' in html
    assert 'src="/static/bootstrap/js/bootstrap.bundle.min.js"' in html
    assert finders.find("bootstrap/css/bootstrap.min.css") is not None
    assert finders.find("bootstrap/js/bootstrap.bundle.min.js") is not None
    # Nothing is loaded from another host: the portal must work offline.
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_a_user_logs_in_and_sees_the_dashboard(client, alice):
    response = client.post(
        reverse("login"), {"username": "alice", "password": PASSWORD}, follow=True
    )

    assert response.redirect_chain == [(reverse("core:dashboard"), 302)]
    assert b"Dashboard" in response.content
    assert b"Signed in as <strong>alice</strong>" in response.content


def test_a_wrong_password_shows_an_error_and_no_session(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})

    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert "_auth_user_id" not in client.session


def test_the_session_id_changes_at_login(client, alice):
    client.get(reverse("login"))
    client.session.save()
    before = client.session.session_key

    client.post(reverse("login"), {"username": "alice", "password": PASSWORD})

    assert client.session.session_key != before


def test_logout_needs_a_post_and_ends_the_session(client, alice):
    client.force_login(alice)

    assert client.get(reverse("logout")).status_code == 405
    response = client.post(reverse("logout"))

    assert response.status_code == 302
    assert client.get(reverse("core:dashboard")).status_code == 302


def test_the_login_form_is_protected_by_csrf(alice):
    response = Client(enforce_csrf_checks=True).post(
        reverse("login"), {"username": "alice", "password": PASSWORD}
    )

    assert response.status_code == 403


def test_the_health_check_answers_when_the_database_does(client):
    response = client.get(reverse("core:healthz"))

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]
