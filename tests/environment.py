"""Loaded by pytest before Django reads its settings (`-p tests.environment` in pyproject).

The suite must run on the same settings on every machine: it never reads a developer's
`.env` (which may point at another database or turn debug off), and keeps its local state
(SQLite file, broker folders) out of the developer's `var/`.
"""

import os
import tempfile

os.environ["MAILDESK_ENV_FILE"] = ""
os.environ.setdefault("MAILDESK_VAR_DIR", tempfile.mkdtemp(prefix="maildesk-tests-"))
