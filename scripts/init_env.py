"""Create `.env` with fresh random secrets for the embedded setup, or add missing ones.

Run by `make run`; standard library only. Existing values are never changed, so the demo
password and the emulator's admin password stay the same from one run to the next.
"""

import base64
import os
import secrets
import sys
from pathlib import Path

ENV_FILE = Path(__file__).resolve().parent.parent / ".env"


def _generated() -> dict[str, str]:
    return {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        # The bundled emulator and the portal both read these, so the portal can log in.
        "IREDADMIN_USERNAME": "maildesk-admin@maildesk.invalid",
        "IREDADMIN_PASSWORD": secrets.token_urlsafe(24) + "-A1",
        "MAILDESK_DEMO_PASSWORD": "demo-" + secrets.token_urlsafe(9),
        # Seals new mailbox passwords until the worker uses them (a Fernet key).
        "MAILDESK_ENCRYPTION_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        # Keys the audit log's hash chain (manage.py verify_audit).
        "MAILDESK_AUDIT_KEY": secrets.token_urlsafe(32),
    }


def main() -> int:
    existing = ENV_FILE.read_text() if ENV_FILE.exists() else ""
    present = {
        line.split("=", 1)[0].strip()
        for line in existing.splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    missing = {key: value for key, value in _generated().items() if key not in present}
    if not missing:
        return 0
    header = (
        ""
        if existing
        else (
            "# Local settings for the embedded setup, written by scripts/init_env.py.\n"
            "# Never commit this file. See README for every setting.\n"
        )
    )
    separator = "" if not existing or existing.endswith("\n") else "\n"
    lines = "".join(f"{key}={value}\n" for key, value in missing.items())
    # Created readable by its owner only, before a secret is written into it.
    descriptor = os.open(ENV_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as env_file:
        env_file.write(existing + separator + header + lines)
    ENV_FILE.chmod(0o600)
    print(f"Wrote {', '.join(missing)} to {ENV_FILE.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
