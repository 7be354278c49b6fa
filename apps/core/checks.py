"""Deployment checks (`manage.py check --deploy`): the embedded defaults are for `make run`."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register


@register(Tags.database, deploy=True)
def check_production_services(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    problems = []
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        problems.append(
            Warning(
                "The database is SQLite, the development default.",
                hint="Set DATABASE_URL to a PostgreSQL database.",
                id="maildesk.W001",
            )
        )
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        problems.append(
            Warning(
                "The Celery broker is the filesystem, the development default: workers on "
                "other hosts cannot see it.",
                hint="Set CELERY_BROKER_URL to Redis (redis://host:6379/0).",
                id="maildesk.W002",
            )
        )
    return problems


@register(Tags.security, deploy=True)
def check_iredadmin_connection(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    config = settings.IREDADMIN
    problems = []
    if not config["URL"].startswith("https://"):
        problems.append(
            Warning(
                f"IREDADMIN_URL ({config['URL']}) is not HTTPS: the admin password would "
                "cross the network in clear text.",
                hint="Use https://<server>/iredadmin/api.",
                id="maildesk.W003",
            )
        )
    if not settings.MAILDESK_AUDIT_KEY:
        problems.append(
            Warning(
                "MAILDESK_AUDIT_KEY is not set: the audit log's hash chain is keyed by a key "
                "derived from DJANGO_SECRET_KEY, and changing that key makes the existing chain "
                "unverifiable.",
                hint="Set MAILDESK_AUDIT_KEY (or MAILDESK_AUDIT_KEY_FILE) to a random secret.",
                id="maildesk.W005",
            )
        )
    if not config["VERIFY_TLS"] and not config["CA_BUNDLE"]:
        problems.append(
            Warning(
                "TLS verification of the mail server is off (IREDADMIN_VERIFY_TLS=false).",
                hint="Set IREDADMIN_CA_BUNDLE to the server's CA certificate instead.",
                id="maildesk.W004",
            )
        )
    return problems


@register(Tags.security, deploy=True)
def check_client_addresses(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    # Production trusts X-Forwarded-Proto, i.e. it expects a reverse proxy in front. With
    # MAILDESK_PROXY_COUNT at 0, every client then has the proxy's address: one person's
    # failed sign-ins throttle everyone, and the audit log records the proxy, not the person.
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None) and not settings.MAILDESK_PROXY_COUNT:
        return [
            Warning(
                "MAILDESK_PROXY_COUNT is 0, yet production settings expect a reverse proxy: "
                "every sign-in would appear to come from the proxy's address.",
                hint="Set MAILDESK_PROXY_COUNT to the number of proxies in front of the portal "
                "(silence maildesk.W006 only if clients connect to it directly).",
                id="maildesk.W006",
            )
        ]
    return []
