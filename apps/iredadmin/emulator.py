"""A faithful local stand-in for an iRedAdmin-Pro server, for development, tests and benchmarks.

It implements the wire contract of `docs/iredadmin-pro-api.md` for the routes Maildesk uses:
login, domains (list, get, create, delete) and mail users (list, get, create, delete), in
both dialects, with the server's route patterns (404 / 405 / trailing-slash 303), cookie
sessions with idle expiry and IP binding, the validation rules and error codes of §6 to §8,
per-domain limits and quota arithmetic (§7.4).

Other routes of the real API are not emulated and answer 404, as a server without them would.

This module is the API's logic without sockets: `Emulator.handle()` takes an `ApiRequest` and
returns a `Reply`; the records, knobs, faults and quota rules are in `emulator_records`.
`apps.iredadmin.emulator_http` serves it over HTTP, with the control API that tests use to
set knobs (latency, faults, forced session expiry) and read counters. Everything here is
guarded by one lock, so any number of server threads may call in.
"""

import json
import os
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote

from apps.iredadmin import validators
from apps.iredadmin.client import CURRENT, LEGACY
from apps.iredadmin.emulator_records import (
    SUPPORTED_HASH_SCHEMES,
    Admin,
    ApiRequest,
    Config,
    Domain,
    Fault,
    Mailbox,
    Refusal,
    Reply,
    Session,
    Store,
    assign_quota,
    domain_profile,
    hash_password,
    ip_allowed,
    now_iso,
    password_matches,
    to_int,
    user_profile,
)

__all__ = ["CURRENT", "LEGACY", "ApiRequest", "Config", "Emulator", "Fault", "Reply"]


# Routes in the server's order. The captured value is matched case-sensitively, then
# lower-cased, as web.py does.
_ROUTES: list[tuple[str, re.Pattern[str]]] = [
    ("login", re.compile(r"/api/login")),
    ("domains", re.compile(r"/api/domains")),
    ("domain", re.compile(rf"/api/domain/({validators.DOMAIN_ROUTE_PATTERN})")),
    ("users", re.compile(rf"/api/users/({validators.DOMAIN_ROUTE_PATTERN})")),
    ("user", re.compile(rf"/api/user/({validators.MAIL_ROUTE_PATTERN})")),
    (
        "verify_password_user",
        re.compile(rf"/api/verify_password/user/({validators.MAIL_ROUTE_PATTERN})"),
    ),
]
# Methods of each route in each dialect. The 2016 (legacy) API had no read endpoints: GET on
# a route that exists is a 405, and the list routes did not exist at all.
_METHODS = {
    CURRENT: {
        "login": {"GET", "POST"},
        "domains": {"GET"},
        "domain": {"GET", "POST", "DELETE"},
        "users": {"GET"},
        "user": {"GET", "POST", "DELETE"},
        "verify_password_user": {"POST"},
    },
    LEGACY: {
        "login": {"GET", "POST"},
        "domain": {"POST", "DELETE"},
        "user": {"POST", "DELETE"},
    },
}


def _check_knob(name: str, value: Any, expected: Any) -> None:
    """Refuse a knob of the wrong type now, rather than crash every request thread later."""
    if expected is float:
        valid = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    elif expected is int:
        valid = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    elif expected is bool:
        valid = isinstance(value, bool)
    elif expected == list[str]:
        valid = isinstance(value, list) and all(isinstance(item, str) for item in value)
    else:
        valid = isinstance(value, expected)
    if not valid:
        raise ValueError(f"knob {name} must be a {getattr(expected, '__name__', expected)}")


class Emulator:
    """The server's state and behaviour. Thread-safe."""

    def __init__(
        self,
        *,
        dialect: str = CURRENT,
        prefix: str = "/iredadmin",
        backend: str = "MYSQL",
        state_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if dialect not in (CURRENT, LEGACY):
            raise ValueError("dialect must be 'current' or 'legacy'")
        self.dialect = dialect
        self.prefix = prefix.rstrip("/")
        self.cookie_name = f"iRedAdmin-Pro-{backend.upper()}"
        self.cookie_path = f"{self.prefix}/"
        self.config = Config()
        self._lock = threading.RLock()
        self._store = Store()
        self._admins: dict[str, Admin] = {}
        self._sessions: dict[str, Session] = {}
        self._faults: list[Fault] = []
        self._last_purge = time.monotonic()
        self._state_file = Path(state_file) if state_file else None
        self.reset_stats()
        if self._state_file and self._state_file.exists():
            self._load_state()

    # --- Setup and control (also reachable over HTTP, see emulator_http) -----------------------

    def add_admin(
        self,
        username: str,
        password: str,
        *,
        global_admin: bool = True,
        domains: list[str] | tuple[str, ...] = (),
    ) -> None:
        with self._lock:
            self._admins[username.strip().lower()] = Admin(
                username=username.strip().lower(),
                password=hash_password(password),
                global_admin=global_admin,
                domains={domain.lower() for domain in domains},
            )

    def add_domain(self, domain: str, **values: Any) -> None:
        """Create a domain directly (seeding): values are `Domain` columns, e.g. maxquota."""
        with self._lock:
            now = now_iso()
            self._store.add_domain(
                Domain(domain=domain.lower(), created=now, modified=now, **values)
            )
            self._save_state()

    def add_mailbox(self, email: str, password: str, *, name: str = "", quota: int = 0) -> None:
        """Create a mailbox directly (seeding), e.g. one that exists before Maildesk acts."""
        with self._lock:
            address = email.lower()
            domain = address.rpartition("@")[2]
            if domain not in self._store.domains:
                raise ValueError(f"domain {domain} does not exist")
            now = now_iso()
            self._store.add_mailbox(
                Mailbox(
                    username=address,
                    domain=domain,
                    password=hash_password(password),
                    name=name,
                    quota=quota,
                    created=now,
                    modified=now,
                    passwordlastchange=now,
                )
            )
            self._save_state()

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs (see `Config`); unknown names are refused. Returns the new config."""
        known = {f.name: f.type for f in fields(Config)}
        unknown = sorted(set(knobs) - set(known))
        if unknown:
            raise ValueError(f"unknown knobs: {', '.join(unknown)}")
        for name, value in knobs.items():
            _check_knob(name, value, known[name])
        if knobs.get("session_expiry_style", "login_required") not in (
            "login_required",
            "redirect",
        ):
            raise ValueError("session_expiry_style must be login_required or redirect")
        with self._lock:
            for name, value in knobs.items():
                setattr(self.config, name, value)
            return asdict(self.config)

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(fault) for fault in self._faults]

    def expire_sessions(self) -> int:
        """End every session now (like tools/delete_sessions.py); returns how many."""
        with self._lock:
            count = len(self._sessions)
            self._sessions.clear()
            self._stats["sessions_expired"] += count
            return count

    def reset_stats(self) -> None:
        with self._lock:
            # Calls still in flight stay counted: they leave after the reset.
            in_flight = getattr(self, "_stats", {}).get("in_flight", 0)
            self._stats: dict[str, Any] = {
                "requests": 0,
                "connections": 0,
                "logins": 0,
                "failed_logins": 0,
                "sessions_expired": 0,
                "faults_injected": 0,
                "in_flight": in_flight,
                "in_flight_max": in_flight,
            }
            self._calls: Counter[str] = Counter()
            self._api_calls = 0  # logins excluded; drives expire_session_every
            self._created: Counter[str] = Counter()
            self._deleted: Counter[str] = Counter()

    def reset(self) -> None:
        """Forget every domain, mailbox, session, fault and counter (admins stay)."""
        with self._lock:
            self._store.clear()
            self._sessions.clear()
            self._faults.clear()
            self.config = Config()
            self.reset_stats()
            self._save_state()

    def stats(self) -> dict[str, Any]:
        """Counters: requests, connections, logins, calls by route, creations per account..."""
        with self._lock:
            snapshot = dict(self._stats)
            snapshot["calls"] = dict(self._calls)
            snapshot["created"] = dict(self._created)
            snapshot["deleted"] = dict(self._deleted)
            snapshot["sessions"] = len(self._sessions)
            return snapshot

    def accounts(self) -> dict[str, list[str]]:
        with self._lock:
            return {
                "domains": sorted(self._store.domains),
                "users": sorted(self._store.mailboxes),
            }

    def mailbox(self, email: str) -> dict[str, Any] | None:
        """A mailbox's stored row without its hash (for tests), or None."""
        with self._lock:
            mailbox = self._store.mailboxes.get(email.lower())
            return user_profile(mailbox) if mailbox else None

    def domain(self, domain: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._store.domains.get(domain.lower())
            return self._domain_profile(found) if found else None

    # --- Connection accounting (called by the HTTP layer) --------------------------------------

    def note_connection(self) -> None:
        with self._lock:
            self._stats["connections"] += 1

    def _enter(self) -> None:
        with self._lock:
            self._stats["requests"] += 1
            self._stats["in_flight"] += 1
            self._stats["in_flight_max"] = max(
                self._stats["in_flight_max"], self._stats["in_flight"]
            )

    def _leave(self) -> None:
        with self._lock:
            self._stats["in_flight"] -= 1

    # --- Request handling ----------------------------------------------------------------------

    def handle(self, request: ApiRequest) -> Reply:
        """Answer one API request as the server would (and as the knobs and faults say)."""
        self._enter()
        try:
            latency = self.config.latency
            if latency > 0:
                time.sleep(latency)
            reply = self._handle(request)
            if reply.session_id is None and not (reply.drop or reply.expire_cookie):
                # Like web.py's session processor: every answer carries a session cookie, a
                # fresh anonymous one unless the caller has a live session.
                with self._lock:
                    known = request.session_id in self._sessions
                reply.session_id = request.session_id if known else secrets.token_hex(20)
            return reply
        finally:
            self._leave()

    def _handle(self, request: ApiRequest) -> Reply:
        if not self.config.api_enabled:
            return self._framework(404, "not found")
        path = request.path
        if len(path) > 1 and path.endswith("/"):
            if request.method != "GET":
                return self._framework(405, "method not allowed")
            location = self.prefix + path.rstrip("/")
            if request.query:
                location += "?" + "&".join(
                    f"{quote(k)}={quote(v)}" for k, v in request.query.items()
                )
            return self._redirect(location)
        route, value = self._match(path)
        if route is None:
            with self._lock:
                self._calls["unmatched"] += 1
            return self._framework(404, "not found")
        if request.method not in _METHODS[self.dialect].get(route, set()):
            return self._framework(405, "method not allowed")
        with self._lock:
            self._calls[f"{request.method} {route}"] += 1
            # Decided here, under the lock that counts the call, so that concurrent calls
            # cannot take each other's turn.
            every = self.config.expire_session_every
            expire = False
            if route != "login":
                self._api_calls += 1
                expire = bool(every) and self._api_calls % every == 0
            fault = self._take_fault(request.method, route, value)
        if fault is None:
            return self._serve(request, route, value, expire=expire)
        return self._misbehave(fault, request, route, value, expire=expire)

    def _match(self, path: str) -> tuple[str | None, str]:
        for name, pattern in _ROUTES:
            if name not in _METHODS[self.dialect]:
                continue  # this release of the API has no such route
            match = pattern.fullmatch(path)
            if match:
                return name, (match.group(1).lower() if match.groups() else "")
        return None, ""

    def _take_fault(self, method: str, route: str, value: str) -> Fault | None:
        for index, fault in enumerate(self._faults):
            if fault.matches(method, route, value):
                if fault.times == 1:
                    del self._faults[index]
                elif fault.times > 1:
                    fault.times -= 1
                self._stats["faults_injected"] += 1
                return fault
        return None

    def _misbehave(
        self, fault: Fault, request: ApiRequest, route: str, value: str, *, expire: bool
    ) -> Reply:
        if fault.kind == "delay":
            if not fault.effect:
                time.sleep(fault.delay)
            reply = self._serve(request, route, value, expire=expire)
            if fault.effect:
                time.sleep(fault.delay)
            return reply
        if fault.kind == "expire":
            return self._serve(request, route, value, expire=True)
        session_id = None
        if fault.effect:
            session_id = self._serve(request, route, value, expire=expire).session_id
        if fault.delay:
            time.sleep(fault.delay)
        if fault.kind == "drop":
            return Reply(status=0, body=b"", drop=True)
        if fault.kind == "status":
            text = "internal server error" if fault.status == 500 else f"error {fault.status}"
            return Reply(fault.status, text.encode(), "text/html", session_id=session_id)
        if fault.kind == "html":
            page = b"<!DOCTYPE html><html><body><form action='/login'>Login</form></body></html>"
            return Reply(200, page, "text/html; charset=utf-8", session_id=session_id)
        if fault.kind == "non_json":
            return Reply(200, b'{"_success": tr', session_id=session_id)
        return self._json(self._failure(fault.message), session_id=session_id)

    def _serve(self, request: ApiRequest, route: str, value: str, *, expire: bool) -> Reply:
        with self._lock:
            if not ip_allowed(request.client_ip, self.config.allowed_clients):
                return self._json(self._failure("NOT_AUTHORIZED"))
            if route == "login":
                return self._login(request)
            session_id, admin, expired_reply = self._session(request, expire=expire)
            if expired_reply is not None:
                return expired_reply
            try:
                if admin is None:
                    raise Refusal("LOGIN_REQUIRED")
                handler = getattr(self, f"_{request.method.lower()}_{route}")
                data = handler(request, value, admin)
            except Refusal as refusal:
                return self._json(self._failure(refusal.code), session_id=session_id)
            return self._json(self._success(data), session_id=session_id)

    def _session(
        self, request: ApiRequest, *, expire: bool
    ) -> tuple[str | None, Admin | None, Reply | None]:
        """The caller's session: (its id, its admin, a 303 reply if it just expired).

        `expire`: this call's turn to find its session expired (expire_session_every). An
        anonymous caller gets (None, None, None): `handle` gives its answer a new cookie.
        """
        now = time.monotonic()
        session = self._sessions.get(request.session_id or "")
        if session and now - session.last_seen > self.config.session_timeout:
            del self._sessions[request.session_id]
            self._stats["sessions_expired"] += 1
            session = None
        if session and expire:
            del self._sessions[request.session_id]
            self._stats["sessions_expired"] += 1
            if self.config.session_expiry_style == "redirect":
                return None, None, self._session_expired_redirect()
            session = None
        if session and session.client_ip != request.client_ip:
            # The session is bound to the client's IP (SESSION_IGNORE_CHANGE_IP = False).
            del self._sessions[request.session_id]
            self._stats["sessions_expired"] += 1
            return None, None, self._session_expired_redirect()
        if session is None:
            # Like web.py with ignore_expiry: an unknown or expired cookie gets a fresh session.
            return None, None, None
        session.last_seen = now
        return request.session_id, self._admins.get(session.admin), None

    def _login(self, request: ApiRequest) -> Reply:
        if request.method == "GET":
            return self._json(self._failure("INVALID_HTTP_METHOD"))
        fields_ = {**request.query, **request.form}
        username = fields_.get("username", "").strip().lower()
        password = fields_.get("password", "")
        code = None
        admin = self._admins.get(username)
        if not validators.server_accepts_email(username):
            code = "INVALID_USERNAME"
        elif not password:
            code = "EMPTY_PASSWORD"
        elif admin is None or not password_matches(admin.password, password):
            code = "INVALID_CREDENTIALS"
        if code:
            self._stats["failed_logins"] += 1
            return self._json(self._failure(code))
        if admin.global_admin and not ip_allowed(request.client_ip, self.config.global_admin_ips):
            self._stats["failed_logins"] += 1
            return self._redirect(f"{self.prefix}/login?msg=NOT_ALLOWED_IP")
        self._purge_sessions()
        session_id = secrets.token_hex(20)
        self._sessions[session_id] = Session(admin.username, request.client_ip, time.monotonic())
        self._stats["logins"] += 1
        return self._json(self._success(None), session_id=session_id)

    def _purge_sessions(self) -> None:
        """Forget idle sessions, at most once per timeout period (as the server's cleanup)."""
        now = time.monotonic()
        timeout = self.config.session_timeout
        if now - self._last_purge < timeout:
            return
        self._last_purge = now
        for session_id in [i for i, s in self._sessions.items() if now - s.last_seen > timeout]:
            del self._sessions[session_id]

    # --- Operations (called with the lock held; raise Refusal to answer a failure) -----------

    def _get_domains(self, request: ApiRequest, value: str, admin: Admin) -> Any:
        visible = [
            d for name, d in sorted(self._store.domains.items()) if self._may_manage(admin, name)
        ]
        if "disabled_only" in request.query:
            visible = [d for d in visible if not d.active]
        if "name_only" in request.query:
            return [d.domain for d in visible]
        return {d.domain: domain_profile(d, [], listing=True) for d in visible}

    def _get_domain(self, request: ApiRequest, domain: str, admin: Admin) -> Any:
        self._require_domain_access(admin, domain)
        found = self._store.domains.get(domain)
        if found is None:
            raise Refusal("INVALID_DOMAIN_NAME")
        return self._domain_profile(found)

    def _post_domain(self, request: ApiRequest, domain: str, admin: Admin) -> Any:
        if not admin.global_admin:
            raise Refusal("PERMISSION_DENIED")
        if not validators.server_accepts_domain(domain):
            raise Refusal("INVALID_DOMAIN_NAME")
        if domain in self._store.domains:
            raise Refusal("ALREADY_EXISTS")
        form = {**request.query, **request.form}
        names = self._field_names()
        language = form.get(names["language"], "")
        now = now_iso()
        self._store.add_domain(
            Domain(
                domain=domain,
                description=form.get(names["name"], ""),
                language=language if language in validators.LANGUAGES else "",
                maxquota=max(to_int(form.get("quota")), 0),
                default_user_quota=max(to_int(form.get("defaultQuota")), 0),
                max_user_quota=max(to_int(form.get("maxUserQuota")), 0),
                mailboxes=to_int(form.get("numberOfUsers")),
                aliases=to_int(form.get("numberOfAliases")),
                maillists=to_int(form.get("numberOfLists")),
                transport=form.get("transport") or "dovecot",
                created=now,
                modified=now,
            )
        )
        self._created[f"domain:{domain}"] += 1
        self._save_state()
        return None

    def _delete_domain(self, request: ApiRequest, domain: str, admin: Admin) -> Any:
        self._require_domain_access(admin, domain)
        # No existence check: deleting a missing domain succeeds. Its mailboxes go with it.
        existed = domain in self._store.domains
        for address in self._store.remove_domain(domain):
            self._deleted[f"user:{address}"] += 1
        if existed:
            self._deleted[f"domain:{domain}"] += 1
        self._save_state()
        return None

    def _get_users(self, request: ApiRequest, domain: str, admin: Admin) -> Any:
        self._require_domain_access(admin, domain)
        if domain not in self._store.domains:
            raise Refusal("INVALID_DOMAIN_NAME")
        boxes = sorted(self._store.mailboxes_of(domain), key=lambda m: m.username)
        if "disabled_only" in request.query:
            boxes = [m for m in boxes if not m.active]
        if "email_only" in request.query:
            return [m.username for m in boxes]
        return [user_profile(m) for m in boxes]

    def _get_user(self, request: ApiRequest, email: str, admin: Admin) -> Any:
        self._require_domain_access(admin, email.rpartition("@")[2])
        found = self._store.mailboxes.get(email)
        if found is None:
            raise Refusal("NO_SUCH_ACCOUNT")
        return user_profile(found)

    def _post_user(self, request: ApiRequest, email: str, admin: Admin) -> Any:
        # The checks run in the server's order (§8 item 4).
        domain_name = email.rpartition("@")[2]
        self._require_domain_access(admin, domain_name)
        if not validators.server_accepts_new_mailbox(email):
            raise Refusal("INVALID_MAIL")
        local, _, _ = email.partition("@")
        if f"{local.partition('+')[0]}@{domain_name}" in self._store.mailboxes:
            raise Refusal("ALREADY_EXISTS")
        domain = self._store.domains.get(domain_name)
        if domain is None:
            raise Refusal("INVALID_DOMAIN_NAME")
        if domain.mailboxes == -1:
            raise Refusal("NOT_ALLOWED")
        if domain.mailboxes > 0 and self._store.count_in(domain_name) >= domain.mailboxes:
            raise Refusal("EXCEEDED_DOMAIN_ACCOUNT_LIMIT")
        form = {**request.query, **request.form}
        names = self._field_names()
        quota = assign_quota(
            domain, self._store.allocated_in(domain_name), form.get(names["quota"])
        )
        password_hash = form.get("password_hash", "")
        if password_hash:
            scheme = re.match(r"\{([A-Z0-9\-]+)\}", password_hash.upper())
            if not scheme or scheme.group(1) not in SUPPORTED_HASH_SCHEMES:
                raise Refusal("INVALID_PASSWORD_SCHEME")
            stored = password_hash
        else:
            problems = validators.password_policy_violations(
                form.get("password", ""),
                min_length=domain.min_passwd_length or self.config.min_password_length,
                max_length=self.config.max_password_length,
            )
            if problems:
                raise Refusal(",".join(problems))
            stored = hash_password(form["password"])
        # Absent: the domain's default language. Unknown: silently blank (contract §7.1).
        language = form.get(names["language"], domain.language)
        now = now_iso()
        self._store.add_mailbox(
            Mailbox(
                username=email,
                domain=domain_name,
                password=stored,
                name=form.get(names["name"], ""),
                language=language if language in validators.LANGUAGES else "",
                quota=quota,
                created=now,
                modified=now,
                passwordlastchange=now,
            )
        )
        self._created[f"user:{email}"] += 1
        self._save_state()
        return None

    def _post_verify_password_user(self, request: ApiRequest, email: str, admin: Admin) -> Any:
        if not admin.global_admin:
            raise Refusal("PERMISSION_DENIED")
        password = {**request.query, **request.form}.get("password", "")
        if not password:
            raise Refusal("EMPTY_PASSSWORD")  # sic: three S, as the server spells it
        mailbox = self._store.mailboxes.get(email)
        if mailbox is None or not mailbox.password.startswith("{SSHA512}"):
            raise Refusal(None)
        if not password_matches(mailbox.password, password):
            raise Refusal(None)  # a mismatch: {"_success": false} without a message
        return None

    def _delete_user(self, request: ApiRequest, email: str, admin: Admin) -> Any:
        self._require_domain_access(admin, email.rpartition("@")[2])
        if self._store.remove_mailbox(email):
            self._deleted[f"user:{email}"] += 1
            self._save_state()
        return None

    # --- Rules ---------------------------------------------------------------------------------

    def _domain_profile(self, domain: Domain) -> dict[str, Any]:
        return domain_profile(domain, self._store.mailboxes_of(domain.domain))

    def _may_manage(self, admin: Admin, domain: str) -> bool:
        return admin.global_admin or domain in admin.domains

    def _require_domain_access(self, admin: Admin, domain: str) -> None:
        if not self._may_manage(admin, domain):
            raise Refusal("PERMISSION_DENIED")

    def _field_names(self) -> dict[str, str]:
        if self.dialect == LEGACY:
            return {"name": "cn", "language": "preferredLanguage", "quota": "mailQuota"}
        return {"name": "name", "language": "language", "quota": "quota"}

    # --- Answers -------------------------------------------------------------------------------

    def _success(self, data: Any) -> dict[str, Any]:
        if self.dialect == LEGACY:
            return {"success": True}
        return {"_success": True} if data is None else {"_success": True, "_data": data}

    def _failure(self, code: str | None) -> dict[str, Any]:
        """A failure envelope; `code` None gives the bare `{"_success": false}`."""
        if self.dialect == LEGACY:
            return {"success": False} if code is None else {"success": False, "msg": code}
        return {"_success": False} if code is None else {"_success": False, "_msg": code}

    def _json(self, payload: dict[str, Any], *, session_id: str | None = None) -> Reply:
        return Reply(200, json.dumps(payload).encode(), session_id=session_id)

    def _framework(self, status: int, text: str) -> Reply:
        return Reply(status, text.encode(), "text/html; charset=utf-8")

    def _redirect(self, location: str) -> Reply:
        return Reply(303, b"", "text/html; charset=utf-8", location=location)

    def _session_expired_redirect(self) -> Reply:
        reply = self._redirect(f"{self.prefix}/login?msg=SESSION_EXPIRED")
        reply.expire_cookie = True
        return reply

    # --- Persistence (optional, for `make run`) ------------------------------------------------

    def _save_state(self) -> None:
        if self._state_file is None:
            return
        temporary = self._state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._store.to_state(), indent=1))
        os.replace(temporary, self._state_file)

    def _load_state(self) -> None:
        """Read the rows saved by `_save_state` (only called when the file exists)."""
        self._store.load_state(json.loads(self._state_file.read_text()))
