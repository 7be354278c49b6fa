"""Maildesk settings, read from the environment (and from a `.env` file when present).

The embedded defaults need no server at all (DESIGN.md §5): SQLite and a kombu filesystem
broker under `var/`, and the bundled iRedAdmin-Pro emulator on 127.0.0.1:8091.
`DATABASE_URL` switches to PostgreSQL and `CELERY_BROKER_URL` to Redis.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

from portal.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_secret,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# Real environment variables win over the file, so CI and production are never overridden
# by a developer's leftover `.env`. MAILDESK_ENV_FILE names another file; empty reads none.
_env_file = os.environ.get("MAILDESK_ENV_FILE", str(BASE_DIR / ".env"))
if _env_file:
    load_dotenv(_env_file, override=False)

VAR_DIR = Path(env_str("MAILDESK_VAR_DIR") or BASE_DIR / "var")

DEBUG = env_bool("DJANGO_DEBUG", True)

# The development key is deliberately marked insecure; production refuses it below.
_DEVELOPMENT_SECRET_KEY = "django-insecure-maildesk-development-only"  # noqa: S105
SECRET_KEY = env_secret("DJANGO_SECRET_KEY") or (_DEVELOPMENT_SECRET_KEY if DEBUG else "")
if not DEBUG and (
    len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure")
):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set to a random value of at least 50 characters when "
        "DJANGO_DEBUG=false. Generate one with: "
        'python -c "import secrets; print(secrets.token_urlsafe(64))"'
    )

_LOCAL_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", _LOCAL_HOSTS if DEBUG else [])
if DEBUG and set(ALLOWED_HOSTS) - {*_LOCAL_HOSTS, "testserver"}:
    # Debug mode is the default (for `make run`); a deployment names its host, and must not
    # run with tracebacks on error pages and the development key.
    raise ImproperlyConfigured(
        "DJANGO_ALLOWED_HOSTS names a public host while DJANGO_DEBUG is true (the development "
        "default): set DJANGO_DEBUG=false for a deployment."
    )
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "DJANGO_ALLOWED_HOSTS must list the host names the portal answers to "
        "(comma-separated) when DJANGO_DEBUG=false."
    )
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "crispy_forms",
    "crispy_bootstrap5",
    "bootstrap",
    "django_htmx",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "apps.core",
    "apps.accounts",
    "apps.iredadmin",
    "apps.audit",
    "apps.provisioning",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "apps.core.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # After messages (it says why a session ended) and htmx (polling is not activity).
    "apps.accounts.middleware.SessionLimitsMiddleware",
    "apps.accounts.two_factor.SecondFactorMiddleware",
    # Last, as django-axes requires: it turns a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'maildesk.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Web and worker write to the same file: WAL lets readers run beside the writer, and
    # IMMEDIATE transactions take the write lock up front instead of failing on upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Parameters travel apart from the statement (psycopg 3's server-side binding), so Python
    # no longer quotes every value into the SQL: a worker claims and records with 13% less CPU
    # (docs/performance.md).
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True
# A worker process's writer prepares the statements it runs again and again (its claims and
# records), so PostgreSQL parses and plans them once per connection (apps.provisioning
# .execution). Only there: a prepared page query could keep a plan made for other values.
# A PgBouncer in transaction mode needs 1.22+ with max_prepared_statements (psycopg sends
# DEALLOCATE ALL after a rollback), or this false (docs/deploy.md).
MAILDESK_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Authentication ---------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "core:dashboard"
LOGOUT_REDIRECT_URL = "login"
AUTHENTICATION_BACKENDS = [
    # Refuses sign-ins for a username and address locked out by failed attempts.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# Sessions end after this long without activity, and this long after sign-in in any case
# (apps.accounts.middleware). Status polling of an open page does not count as activity.
MAILDESK_SESSION_IDLE_SECONDS = env_int("MAILDESK_SESSION_IDLE_SECONDS", 30 * 60, minimum=60)
MAILDESK_SESSION_ABSOLUTE_SECONDS = env_int(
    "MAILDESK_SESSION_ABSOLUTE_SECONDS", 12 * 3600, minimum=60
)
SESSION_COOKIE_AGE = MAILDESK_SESSION_ABSOLUTE_SECONDS
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"

# Approvers and portal admins confirm sign-in with a TOTP code (apps.accounts.two_factor).
MAILDESK_REQUIRE_2FA = env_bool("MAILDESK_REQUIRE_2FA", not DEBUG)
OTP_TOTP_ISSUER = "Maildesk"

# Failed sign-ins are throttled per username and address together: an attacker elsewhere can
# not lock a person out, and a lockout lifts by itself after the cool-off.
AXES_FAILURE_LIMIT = env_int("MAILDESK_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("MAILDESK_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# Across usernames, one address may fail this often within the cool-off (password spraying;
# apps.accounts.throttle). Higher than the per-username limit: an office shares one address.
MAILDESK_LOGIN_ADDRESS_FAILURE_LIMIT = env_int(
    "MAILDESK_LOGIN_ADDRESS_FAILURE_LIMIT", 30, minimum=1
)
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "apps.core.http.client_ip"
AXES_VERBOSE = False
# Reverse proxies in front of the portal whose X-Forwarded-For is trusted (0: none).
MAILDESK_PROXY_COUNT = env_int("MAILDESK_PROXY_COUNT", 0, minimum=0)

# --- Internationalisation ---------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT") or VAR_DIR / "static")
if DEBUG:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns when it is missing
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Production serves hashed, compressed files collected by `collectstatic`.
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage",
    },
}

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

# --- Production hardening (only without DEBUG: runserver speaks plain HTTP) ------------------
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    # Load balancers probe the health check over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # Entering the browsers' preload list is the domain owner's choice and hard to undo:
        # opt in with DJANGO_SECURE_HSTS_PRELOAD=true; the check's reminder is not a fault.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- Celery -----------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Producer and consumer share one folder: the web process writes, the worker reads.
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Unacknowledged messages come back after this long; it must exceed the longest task.
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60),
        # Without these a publish waits forever on a broker that stopped answering, and a
        # worker stays stuck on a half-open connection (kombu's redis transport docs).
        "socket_timeout": env_float("CELERY_REDIS_SOCKET_TIMEOUT", 10.0, minimum=1),
        "socket_connect_timeout": env_float("CELERY_REDIS_CONNECT_TIMEOUT", 3.0, minimum=0.5),
        "health_check_interval": env_int("CELERY_REDIS_HEALTH_CHECK_SECONDS", 10, minimum=1),
    }
# Several portals (or test runs) can share one Redis by using different queues.
CELERY_TASK_DEFAULT_QUEUE = env_str("MAILDESK_QUEUE") or "celery"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
# A task is acknowledged after it ran, so a killed worker's task is delivered again.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message waiting per thread besides the one it runs: the thread never idles while the
# next message makes its way from Redis. A killed worker's waiting messages come back after the
# visibility timeout, and the sweeper re-publishes their requests long before (they stay
# queued in the database), so a larger prefetch loses nothing; it would only make one worker
# hoard work that idle ones could do.
CELERY_WORKER_PREFETCH_MULTIPLIER = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fix-up closes the database connection before and after every task unless
# this is set: a new PostgreSQL connection per task, a third of a task's cost. Connections are
# kept instead, and checked the way Django checks them between web requests (CONN_MAX_AGE,
# CONN_HEALTH_CHECKS; portal/celery.py). Celery still recycles one every this many tasks.
CELERY_DB_REUSE_MAX = 1000

# --- iRedAdmin-Pro ----------------------------------------------------------------------------
# The admin password is not a setting: apps.iredadmin.config reads IREDADMIN_PASSWORD (or
# IREDADMIN_PASSWORD_FILE) when the worker makes a client, so the web process never loads it.
IREDADMIN = {
    "URL": env_str("IREDADMIN_URL")
    or f"http://127.0.0.1:{env_int('MAILDESK_EMULATOR_PORT', 8091, minimum=1)}/iredadmin/api",
    "USERNAME": env_str("IREDADMIN_USERNAME") or "maildesk-admin@maildesk.invalid",
    "DIALECT": env_choice("IREDADMIN_DIALECT", "auto", {"auto", "current", "legacy"}),
    "TIMEOUT": env_float("IREDADMIN_TIMEOUT", 10.0, minimum=0.1),
    "VERIFY_TLS": env_bool("IREDADMIN_VERIFY_TLS", True),
    # After the server refuses Maildesk's login, each worker process waits this long before
    # trying again: retrying at once would lock the admin account or flood the server's log.
    "LOGIN_RETRY_SECONDS": env_float("IREDADMIN_LOGIN_RETRY_SECONDS", 30.0, minimum=0),
    # A CA bundle file for servers with a private CA; takes precedence over VERIFY_TLS.
    "CA_BUNDLE": env_str("IREDADMIN_CA_BUNDLE"),
    # The server's password policy (iRedAdmin-Pro's min_passwd_length / max_passwd_length),
    # so that forms refuse what the server would refuse.
    "PASSWORD_MIN_LENGTH": env_int("IREDADMIN_PASSWORD_MIN_LENGTH", 8, minimum=1),
    "PASSWORD_MAX_LENGTH": env_int("IREDADMIN_PASSWORD_MAX_LENGTH", 0, minimum=0),
}

# --- Requests and their execution -------------------------------------------------------------
# Fernet keys (comma-separated, newest first; or one per line in MAILDESK_ENCRYPTION_KEYS_FILE)
# that seal new mailbox passwords until the worker uses them. Older keys stay listed until
# `manage.py rotate_keys` has re-sealed everything with the newest.
MAILDESK_ENCRYPTION_KEYS = [
    key.strip()
    for key in env_secret("MAILDESK_ENCRYPTION_KEYS").replace("\n", ",").split(",")
    if key.strip()
]
if not MAILDESK_ENCRYPTION_KEYS and not DEBUG:
    raise ImproperlyConfigured(
        "MAILDESK_ENCRYPTION_KEYS must be set when DJANGO_DEBUG=false. Generate a key with: "
        'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
    )
# Help-desk ticket references: what a valid one looks like, and where it links to.
TICKET_PATTERN = env_str("TICKET_PATTERN") or r"[A-Za-z][A-Za-z0-9_]*-\d+|#?\d+"
TICKET_URL_TEMPLATE = env_str("TICKET_URL_TEMPLATE")  # e.g. https://helpdesk.example/t/{ticket}
# Transient failures are retried with exponential backoff and full jitter, up to this many
# attempts in all; then the request fails.
MAILDESK_MAX_ATTEMPTS = env_int("MAILDESK_MAX_ATTEMPTS", 5, minimum=1)
MAILDESK_RETRY_BASE_SECONDS = env_float("MAILDESK_RETRY_BASE_SECONDS", 5.0, minimum=0)
MAILDESK_RETRY_MAX_SECONDS = env_float("MAILDESK_RETRY_MAX_SECONDS", 300.0, minimum=0)
# A worker owns a running request this long; then the sweeper hands it to another worker. It
# must exceed the longest attempt: up to three calls (reads that reconcile an earlier attempt,
# then the change), each with a login, a re-login and a repeat, each up to the timeout.
MAILDESK_LEASE_SECONDS = env_int(
    "MAILDESK_LEASE_SECONDS", int(IREDADMIN["TIMEOUT"] * 9 + 30), minimum=10
)
# A request held by a problem only an operator can fix (credentials, IP allow-list) waits this
# long, trying again about once per IREDADMIN_LOGIN_RETRY_SECONDS, before it fails.
MAILDESK_OPERATOR_WAIT_SECONDS = env_int("MAILDESK_OPERATOR_WAIT_SECONDS", 3600, minimum=0)
# A publish to the broker is waited for this long at most; past it the sweeper takes over.
MAILDESK_PUBLISH_TIMEOUT = env_float("MAILDESK_PUBLISH_TIMEOUT", 1.0, minimum=0.1)
# Worker threads in all, on every host (deploy/Procfile runs 2 processes of 16): requests
# approved together are cut into messages for this many threads (publishing.messages_for).
MAILDESK_WORKER_THREADS_TOTAL = env_int("MAILDESK_WORKER_THREADS_TOTAL", 32, minimum=1)
# The sweeper runs this often and re-publishes requests queued for longer than the grace time.
MAILDESK_SWEEP_SECONDS = env_int("MAILDESK_SWEEP_SECONDS", 30, minimum=1)
MAILDESK_QUEUED_GRACE_SECONDS = env_int("MAILDESK_QUEUED_GRACE_SECONDS", 60, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-requests": {
        "task": "provisioning.sweep_requests",
        "schedule": float(MAILDESK_SWEEP_SECONDS),
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# Keys the audit log's hash chain (apps.audit.chain). Keep it outside the database, and keep it
# when DJANGO_SECRET_KEY changes: without it the existing chain cannot be verified.
MAILDESK_AUDIT_KEY = env_secret("MAILDESK_AUDIT_KEY")

# --- Logging ----------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": env_str("MAILDESK_LOG_LEVEL", "INFO").upper()},
    "loggers": {
        # A line per task received and per task done, naming only Celery's task id: the audit
        # log records each attempt with its request, and these lines cost a fifth of a task's
        # overhead in the worker. Failures still log (WARNING and above).
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
    },
}
