"""The benchmarks' setting: chaos.harness's real pieces, run with production settings.

Production settings matter to the figures: debug mode keeps every SQL query in memory and
serves static files through Django, and neither happens on a real deployment.
"""

import secrets
from pathlib import Path

from cryptography.fernet import Fernet

from chaos.harness import Environment


def production_settings(workdir: Path) -> dict[str, str]:
    """What portal/settings.py requires with DJANGO_DEBUG=false, freshly generated."""
    return {
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "MAILDESK_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "MAILDESK_AUDIT_KEY": secrets.token_urlsafe(32),
        "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1,testserver",
        # The benchmark plays the TLS-terminating proxy (X-Forwarded-For and -Proto).
        "MAILDESK_PROXY_COUNT": "1",
        "DJANGO_STATIC_ROOT": str(workdir / "static"),
    }


def production_environment(workdir: Path) -> Environment:
    """chaos.harness's pieces (with its short timings) on production settings."""
    return Environment(
        workdir,
        overrides={
            **production_settings(workdir),
            # The approver signs in with a password only: there is no authenticator here.
            "MAILDESK_REQUIRE_2FA": "false",
        },
    )
