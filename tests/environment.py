"""Loaded by pytest before Django reads its settings (`-p tests.environment` in pyproject).

The suite must run on the same settings on every machine: it never reads a developer's
`.env` (which may point at another database or turn debug off), and keeps its local state
(SQLite file, broker folders) out of the developer's `var/`.
"""

import os
import tempfile

os.environ["MAILDESK_ENV_FILE"] = ""
# Each request closes its database connection: the live server's request threads would
# otherwise keep theirs open, and the test database could not be dropped at the end.
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
os.environ.setdefault("MAILDESK_VAR_DIR", tempfile.mkdtemp(prefix="maildesk-tests-"))
