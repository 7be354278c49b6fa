"""Small steps that several test modules take."""

from django.test import Client

from chaos.harness import free_port

__all__ = ["free_port", "logged_in"]


def logged_in(user) -> Client:
    """A test client signed in as `user`."""
    client = Client()
    client.force_login(user)
    return client
