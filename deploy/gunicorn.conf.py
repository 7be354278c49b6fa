"""gunicorn for the portal in production (docs/deploy.md).

    gunicorn -c deploy/gunicorn.conf.py portal.wsgi

Static files are served by whitenoise from inside the application (after `collectstatic`), so
gunicorn is the only web process; TLS ends at the reverse proxy in front of it.
"""

import os
import sys


def _count(name: str, default: int) -> int:
    """A positive whole number from the environment, or a clear message instead of a trace."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        sys.exit(f"{name} must be a whole number of at least 1, not {raw!r}")
    return int(raw)


bind = os.environ.get("MAILDESK_BIND", "127.0.0.1:8000")
# Processes use the cores; threads in each overlap the waits on PostgreSQL and Redis (a page
# spends most of its time waiting on the database). Two processes per core by default.
workers = _count("MAILDESK_WEB_PROCESSES", 2 * (os.cpu_count() or 1))
worker_class = "gthread"
threads = _count("MAILDESK_WEB_THREADS", 4)
# A page answers in milliseconds; one that runs for 30 s is stuck, and its process is replaced.
timeout = _count("MAILDESK_WEB_TIMEOUT", 30)
graceful_timeout = 30
# Keep connections from the reverse proxy open between requests.
keepalive = 5
# Replace each process after this many requests (spread out, so they do not all restart at
# once): a slow leak in any library cannot grow without bound.
max_requests = _count("MAILDESK_WEB_MAX_REQUESTS", 5000)
max_requests_jitter = max_requests // 10
# Access and error logs to stdout/stderr for the service manager. The access line holds no
# cookie and no request body; query strings hold only list filters.
accesslog = "-"
errorlog = "-"
access_log_format = '%({x-forwarded-for}i)s "%(r)s" %(s)s %(b)s %(M)sms'
