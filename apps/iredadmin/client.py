"""The iRedAdmin-Pro RESTful API client: the only code in Maildesk that talks to the mail server.

Wire contract: `docs/iredadmin-pro-api.md` beside the project. In short:

- One login per client (`POST /api/login`), the session cookie reused for every call. On
  `LOGIN_REQUIRED`, any redirect, or a body that is not the API's JSON, the client logs in
  again once and repeats the call once.
- Redirects are never followed: the server's 303s lead to HTML login pages.
- Bodies are form-encoded; DELETE options would go in the query string (DELETE bodies are
  ignored by the server); path segments are percent-encoded and checked against the server's
  route patterns first, so a value can never reach a different resource.
- Two dialects: `current` (`_success`/`_msg`/`_data`; fields `name`, `quota`, `language`) and
  `legacy` (the 2016 release: `success`/`msg`; fields `cn`, `mailQuota`, `preferredLanguage`).
  `auto` learns the dialect from the login answer.

A client is not thread-safe: give each thread its own (see `apps.iredadmin.config`).
It never logs a password, a cookie or a request body.
"""

import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import requests
from django.views.decorators.debug import sensitive_variables
from urllib3.exceptions import NameResolutionError, NewConnectionError

from apps.iredadmin import validators
from apps.iredadmin.errors import (
    AuthenticationError,
    IRedAdminError,
    RejectedError,
    TransientError,
    describe,
)
from apps.iredadmin.transport import Transport

logger = logging.getLogger(__name__)

CURRENT = "current"
LEGACY = "legacy"
AUTO = "auto"
DIALECTS = (AUTO, CURRENT, LEGACY)

# Keyword argument -> (current field name, legacy field name).
DOMAIN_FIELDS: dict[str, tuple[str, str]] = {
    "name": ("name", "cn"),
    "quota_mb": ("quota", "quota"),
    "language": ("language", "preferredLanguage"),
    "default_user_quota_mb": ("defaultQuota", "defaultQuota"),
    "max_user_quota_mb": ("maxUserQuota", "maxUserQuota"),
    "max_users": ("numberOfUsers", "numberOfUsers"),
    "max_aliases": ("numberOfAliases", "numberOfAliases"),
}
USER_FIELDS: dict[str, tuple[str, str]] = {
    "password": ("password", "password"),
    "name": ("name", "cn"),
    "language": ("language", "preferredLanguage"),
    "quota_mb": ("quota", "mailQuota"),
}

# The server's own trouble, named with a code (contract §6.1, misc internals): worth a retry.
_SERVER_TROUBLE_CODES = frozenset({"ERROR_WHILE_QUERYING_DB"})

# Login refusals and permission problems are for an operator to fix, never retried.
_OPERATOR_CODES = frozenset(
    {
        "NOT_AUTHORIZED",
        "PERMISSION_DENIED",
        "INVALID_CREDENTIALS",
        "INVALID_USERNAME",
        "EMPTY_PASSWORD",
    }
)


# Logins the server refused, per process: (base_url, username) -> (monotonic time before which
# no new login is tried, the refusal's code). Shared by all the clients of a process (one per
# worker thread), so a wrong password costs one login per window, not one per task: a storm of
# failed logins would lock the admin account or flood the server's log.
_login_refusals: dict[tuple[str, str], tuple[float, str]] = {}
_login_refusals_lock = threading.Lock()


def forget_login_refusals() -> None:
    """Let every client of this process try logging in again at once (tests, checks)."""
    with _login_refusals_lock:
        _login_refusals.clear()


# What a refusal looks like: UPPER_SNAKE codes, possibly several joined by commas (PW_*).
_CODE = re.compile(r"[A-Z][A-Z0-9_]*(,[A-Z][A-Z0-9_]*)*")


class _SessionLost(Exception):
    """The answer says our session is gone: log in again and repeat once."""

    def __init__(self, reason: str, *, may_have_taken_effect: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.may_have_taken_effect = may_have_taken_effect

    def as_error(self) -> IRedAdminError:
        """The error to raise when the session is lost again right after a fresh login."""
        if self.reason == "NON_JSON":
            return TransientError(
                "INVALID_RESPONSE", may_have_taken_effect=self.may_have_taken_effect
            )
        if self.reason in ("LOGIN_REQUIRED", "SESSION_EXPIRED"):
            return AuthenticationError(
                self.reason, may_have_taken_effect=self.may_have_taken_effect
            )
        return TransientError("REDIRECTED", may_have_taken_effect=self.may_have_taken_effect)


class IRedAdminClient:
    """A logged-in session with one iRedAdmin-Pro server."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        dialect: str = AUTO,
        timeout: float | tuple[float, float] = 10.0,
        verify: bool | str = True,
        login_retry_after: float = 30.0,
    ) -> None:
        """`base_url` is the API base, e.g. `https://mail.example.com/iredadmin/api`.

        `timeout` applies to every call (seconds, or a (connect, read) pair). `verify` is True
        (system CAs), False (no TLS verification: only for a lab), or a CA bundle's path.
        After the server refuses the login, no client of this process for the same server and
        user tries again for `login_retry_after` seconds (0: always try).
        """
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        if parts.username or parts.password:
            # It would be printed in logs and messages: credentials have their own settings.
            raise ValueError("base_url must not contain a user name or password")
        if dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {', '.join(DIALECTS)}, not {dialect!r}")
        if isinstance(verify, str) and not os.path.isfile(verify):
            raise ValueError(f"CA bundle {verify!r} does not exist")
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self._configured_dialect = dialect
        self._dialect = None if dialect == AUTO else dialect
        self._timeout = timeout
        self._login_retry_after = login_retry_after
        self._logged_in = False
        #: Login attempts made by this client (benchmarks and tests read it).
        self.login_count = 0
        #: API calls sent, logins excluded.
        self.call_count = 0

        self._http = Transport(self.base_url, verify=verify)

    def __repr__(self) -> str:
        return f"<IRedAdminClient {self.base_url} as {self.username}>"

    def __enter__(self) -> "IRedAdminClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def dialect(self) -> str | None:
        """`current` or `legacy`; None until the first login when created with `auto`."""
        return self._dialect

    # --- Operations ----------------------------------------------------------------------------

    def create_domain(
        self,
        domain: str,
        *,
        name: str | None = None,
        quota_mb: int | None = None,
        language: str | None = None,
        default_user_quota_mb: int | None = None,
        max_user_quota_mb: int | None = None,
        max_users: int | None = None,
        max_aliases: int | None = None,
    ) -> None:
        fields = {
            "name": name,
            "quota_mb": quota_mb,
            "language": language,
            "default_user_quota_mb": default_user_quota_mb,
            "max_user_quota_mb": max_user_quota_mb,
            "max_users": max_users,
            "max_aliases": max_aliases,
        }
        self._call("POST", ("domain", _domain_segment(domain)), fields, DOMAIN_FIELDS)

    def delete_domain(self, domain: str) -> None:
        self._call("DELETE", ("domain", _domain_segment(domain)))

    @sensitive_variables("password", "fields")
    def create_user(
        self,
        email: str,
        *,
        password: str,
        name: str | None = None,
        language: str | None = None,
        quota_mb: int | None = None,
    ) -> None:
        fields = {"password": password, "name": name, "language": language, "quota_mb": quota_mb}
        self._call("POST", ("user", _mail_segment(email)), fields, USER_FIELDS)

    def delete_user(self, email: str) -> None:
        self._call("DELETE", ("user", _mail_segment(email)))

    def get_domain(self, domain: str) -> dict[str, Any]:
        """The domain's profile (`_data`); RejectedError `INVALID_DOMAIN_NAME` if missing."""
        return self._read(("domain", _domain_segment(domain)))

    def get_user(self, email: str) -> dict[str, Any]:
        """The mailbox's profile (`_data`); RejectedError `NO_SUCH_ACCOUNT` if missing."""
        return self._read(("user", _mail_segment(email)))

    @sensitive_variables("password")
    def verify_user_password(self, email: str, password: str) -> bool:
        """Whether `password` is the mailbox's password (global admin; current dialect)."""
        if not self._logged_in:
            self.login()
        if self._dialect == LEGACY:
            raise RejectedError("UNSUPPORTED_OPERATION")
        path = ("verify_password", "user", _mail_segment(email))
        try:
            self._call("POST", path, {"password": password}, USER_FIELDS)
        except RejectedError as error:
            if error.code == "":
                return False  # a mismatch is the one failure without a message
            raise
        return True

    def list_domains(self) -> list[str]:
        """Names of the domains the admin can see (`GET /api/domains?name_only`)."""
        data = self._read(("domains",), query={"name_only": ""}, expect=list)
        return [str(name) for name in data]

    def login(self) -> None:
        """Log in now (calls log in lazily; this is for checks and warm-up)."""
        if not self._password:
            raise AuthenticationError("NO_PASSWORD_CONFIGURED")
        key = (self.base_url, self.username)
        with _login_refusals_lock:
            not_before, code = _login_refusals.get(key, (0.0, ""))
        if time.monotonic() < not_before:
            raise AuthenticationError(
                code,
                f"{describe(code)} (Maildesk tries logging in again in "
                f"{not_before - time.monotonic():.0f} s.)",
            )
        try:
            self._login()
        except AuthenticationError as refused:
            if self._login_retry_after > 0:
                with _login_refusals_lock:
                    _login_refusals[key] = (
                        time.monotonic() + self._login_retry_after,
                        refused.code,
                    )
            raise
        with _login_refusals_lock:
            _login_refusals.pop(key, None)

    @sensitive_variables("form")
    def _login(self) -> None:
        self._logged_in = False
        if self._configured_dialect == AUTO:
            # Learnt again at every login: a server upgraded meanwhile is simply followed.
            self._dialect = None
        self.login_count += 1
        form = {"username": self.username, "password": self._password}
        response = self._send("POST", ("login",), form=form)
        try:
            self._interpret(response, may_have_taken_effect=False)
        except _SessionLost as lost:
            # A login answered by a redirect or an HTML page will not get better by repeating.
            if lost.reason == "NON_JSON":
                raise TransientError("INVALID_RESPONSE") from None
            raise AuthenticationError(lost.reason) from None
        except RejectedError as refused:
            raise AuthenticationError(refused.code) from None
        self._logged_in = True
        logger.info("Logged in to iRedAdmin-Pro at %s (%s dialect)", self.base_url, self._dialect)

    # --- Plumbing ------------------------------------------------------------------------------

    def _read(
        self,
        path: tuple[str, ...],
        *,
        query: Mapping[str, str] | None = None,
        expect: type = dict,
    ) -> Any:
        if not self._logged_in:
            self.login()
        if self._dialect == LEGACY:
            # The 2016 API had no read endpoints (they came with the current dialect).
            raise RejectedError("UNSUPPORTED_OPERATION")
        envelope = self._call("GET", path, query=query)
        data = envelope.get("_data")
        if not isinstance(data, expect):
            raise TransientError("INVALID_RESPONSE")
        return data

    @sensitive_variables("fields", "request")
    def _call(
        self,
        method: str,
        path: tuple[str, ...],
        fields: Mapping[str, Any] | None = None,
        field_names: Mapping[str, tuple[str, str]] | None = None,
        *,
        query: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        if not self._logged_in:
            self.login()
        # The form is named in the dialect of each attempt's session: a re-login may have
        # found the server upgraded.
        request = (fields, field_names, query)
        try:
            return self._attempt(method, path, *request, may_have_taken_effect=False)
        except _SessionLost as lost:
            logger.warning(
                "iRedAdmin-Pro session lost (%s) on %s %r; logging in again",
                lost.reason,
                method,
                _display(path),
            )
            first_attempt_may_have_taken_effect = lost.may_have_taken_effect
        try:
            self.login()
            return self._attempt(
                method, path, *request, may_have_taken_effect=first_attempt_may_have_taken_effect
            )
        except (_SessionLost, IRedAdminError) as failure:
            error = failure.as_error() if isinstance(failure, _SessionLost) else failure
            # Whatever the re-login or the repeat says (an ALREADY_EXISTS, a timeout, the
            # session lost again), the first attempt may have done the work already.
            if first_attempt_may_have_taken_effect:
                error.may_have_taken_effect = True
            raise error from None

    @sensitive_variables("fields", "form")
    def _attempt(
        self,
        method: str,
        path: tuple[str, ...],
        fields: Mapping[str, Any] | None,
        field_names: Mapping[str, tuple[str, str]] | None,
        query: Mapping[str, str] | None,
        *,
        may_have_taken_effect: bool,
    ) -> dict[str, Any]:
        form = self._form(fields, field_names) if fields and field_names else None
        self.call_count += 1
        response = self._send(method, path, form=form, query=query)
        return self._interpret(response, may_have_taken_effect=may_have_taken_effect)

    @sensitive_variables("form")
    def _send(
        self,
        method: str,
        path: tuple[str, ...],
        *,
        form: dict[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> requests.Response:
        url_path = "/" + "/".join(quote(segment, safe="@") for segment in path)
        changes_state = method != "GET"
        started = time.monotonic()
        try:
            response = self._http.send(
                method, url_path, form=form, query=query, timeout=self._timeout
            )
        except requests.exceptions.SSLError as exc:
            if _certificate_rejected(exc):
                raise AuthenticationError("TLS_ERROR") from None
            # A TLS connection broken in the middle is network trouble like any other.
            raise TransientError(
                "TLS_CONNECTION_FAILED", may_have_taken_effect=changes_state
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise TransientError("CONNECT_TIMEOUT") from None
        except requests.exceptions.ReadTimeout:
            raise TransientError("READ_TIMEOUT", may_have_taken_effect=changes_state) from None
        except requests.exceptions.ConnectionError as exc:
            if _never_connected(exc):
                raise TransientError("CONNECTION_FAILED") from None
            raise TransientError(
                "CONNECTION_DROPPED", may_have_taken_effect=changes_state
            ) from None
        except requests.exceptions.RequestException:
            raise TransientError("CONNECTION_FAILED", may_have_taken_effect=changes_state) from None
        except OSError:
            # requests reports an unreadable CA bundle this way.
            raise AuthenticationError("TLS_ERROR") from None
        logger.debug(
            "iRedAdmin-Pro %s %s -> HTTP %s in %.0f ms",
            method,
            _display(path),
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    def _interpret(
        self, response: requests.Response, *, may_have_taken_effect: bool
    ) -> dict[str, Any]:
        """Turn an HTTP answer into the envelope of a success, or raise the matching error."""
        changes_state = response.request.method != "GET"
        status = response.status_code
        if 300 <= status < 400:
            reason = _redirect_reason(response.headers.get("Location", ""))
            if reason == "NOT_ALLOWED_IP" or reason.startswith("PERMISSION_DENIED"):
                # The HTML pages' way of saying no: logging in again changes nothing.
                raise AuthenticationError(reason)
            raise _SessionLost(reason, may_have_taken_effect=may_have_taken_effect)
        if status >= 500 or status in (408, 429):
            raise TransientError(f"HTTP_{status}", may_have_taken_effect=changes_state)
        if status == 404:
            raise AuthenticationError("API_NOT_FOUND")
        if status in (401, 403):
            raise AuthenticationError(f"HTTP_{status}")
        if status >= 400:
            raise RejectedError(f"HTTP_{status}")

        envelope = _json_object(response)
        if envelope is None:
            # Possibly an HTML login page served by a proxy after the session ended.
            raise _SessionLost(
                "NON_JSON", may_have_taken_effect=may_have_taken_effect or changes_state
            )
        if "_success" in envelope:
            dialect, success, message = CURRENT, envelope["_success"], envelope.get("_msg")
        else:
            dialect, success, message = LEGACY, envelope["success"], envelope.get("msg")
        if self._dialect is None:
            self._dialect = dialect
        elif self._dialect != dialect:
            raise AuthenticationError("DIALECT_MISMATCH")
        if success is True:
            return envelope
        code = "" if message is None else str(message)
        if code == "LOGIN_REQUIRED":
            raise _SessionLost(code, may_have_taken_effect=may_have_taken_effect)
        if code in _OPERATOR_CODES:
            raise AuthenticationError(code)
        if code in _SERVER_TROUBLE_CODES or (code and not _CODE.fullmatch(code)):
            # Not a refusal but a server-side exception (its repr, e.g. a database lock
            # timeout): worth another attempt, and the change may be half done.
            raise TransientError(code, describe(code), may_have_taken_effect=changes_state)
        raise RejectedError(code, may_have_taken_effect=False)

    @sensitive_variables("fields", "form", "value")
    def _form(
        self, fields: Mapping[str, Any], field_names: Mapping[str, tuple[str, str]]
    ) -> dict[str, str]:
        """Name the fields in the server's dialect; None means "not sent"."""
        index = 1 if self._dialect == LEGACY else 0
        form = {}
        for argument, value in fields.items():
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise TypeError(f"{argument} must be an int or a str, not {type(value).__name__}")
            form[field_names[argument][index]] = str(value)
        return form


# --- Helpers -----------------------------------------------------------------------------------


def _domain_segment(domain: str) -> str:
    """The domain as a path segment: lower-cased, IDNA-encoded, matching the server's route."""
    try:
        normalized = validators.normalize_domain(domain)
    except ValueError:
        raise RejectedError("INVALID_DOMAIN_NAME") from None
    if not validators.matches_domain_route(normalized):
        raise RejectedError("INVALID_DOMAIN_NAME")
    return normalized


def _mail_segment(email: str) -> str:
    """The address as a path segment, refusing anything that could change the URL's path."""
    if not email.rpartition("@")[0].isascii():
        # Checked before lower-casing: some letters (the Kelvin sign) lower-case to ASCII.
        raise RejectedError("INVALID_MAIL")
    try:
        normalized = validators.normalize_address(email)
    except ValueError:
        raise RejectedError("INVALID_MAIL") from None
    # The server decodes %2F before routing, so a '/' would split the path.
    if "/" in normalized or not normalized.isascii():
        raise RejectedError("INVALID_MAIL")
    if not validators.matches_mail_route(normalized):
        raise RejectedError("INVALID_MAIL")
    return normalized


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    """The response's JSON envelope, or None if it is anything else."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or not ("_success" in body or "success" in body):
        return None
    return body


def _redirect_reason(location: str) -> str:
    """The `msg` of a redirect to the server's HTML pages (`/login?msg=SESSION_EXPIRED`)."""
    messages = parse_qs(urlsplit(location).query).get("msg")
    # Only a code is trusted: anything else in a Location header is not ours to log.
    if messages and _CODE.fullmatch(messages[0]) and len(messages[0]) <= 64:
        return messages[0]
    return "REDIRECTED"


def _certificate_rejected(exc: requests.exceptions.SSLError) -> bool:
    """True when TLS failed because the server's certificate was not trusted."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        reason = getattr(seen, "reason", None)
        seen = reason if isinstance(reason, BaseException) else (seen.__cause__ or seen.__context__)
    text = str(exc)
    return "CERTIFICATE_VERIFY_FAILED" in text or "doesn't match" in text


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the connection was never made, so the request cannot have been received."""
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(reason, NewConnectionError | NameResolutionError)


def _display(path: tuple[str, ...]) -> str:
    return "/" + "/".join(path)
