"""Clients configured from Django settings (`IREDADMIN` in portal/settings.py)."""

import threading

from django.conf import settings

from apps.iredadmin.client import IRedAdminClient
from portal.env import env_secret


def admin_password() -> str:
    """The iRedAdmin-Pro admin password: IREDADMIN_PASSWORD or the file IREDADMIN_PASSWORD_FILE.

    Read when a client is made, so only the processes that call the API (the worker, the
    check and emulator commands) ever hold it. `IREDADMIN["PASSWORD"]`, when set (tests),
    takes precedence.
    """
    configured = settings.IREDADMIN.get("PASSWORD")
    return configured if configured is not None else env_secret("IREDADMIN_PASSWORD")


def client_from_settings() -> IRedAdminClient:
    """A new client for the configured server; it logs in on its first call.

    Raises ValueError or ImproperlyConfigured when the settings cannot make a client.
    """
    config = settings.IREDADMIN
    return IRedAdminClient(
        base_url=config["URL"],
        username=config["USERNAME"],
        password=admin_password(),
        dialect=config["DIALECT"],
        timeout=config["TIMEOUT"],
        verify=config["CA_BUNDLE"] or config["VERIFY_TLS"],
        login_retry_after=config["LOGIN_RETRY_SECONDS"],
    )


_local = threading.local()


def thread_client() -> IRedAdminClient:
    """This thread's client: logged in once, then reused by every task the thread runs."""
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = client_from_settings()
    return client


def reset_thread_client() -> None:
    """Forget this thread's client (after a settings change, or in tests)."""
    client = getattr(_local, "client", None)
    if client is not None:
        client.close()
        _local.client = None
