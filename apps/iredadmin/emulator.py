"""A faithful local stand-in for an iRedAdmin-Pro server, for development, tests and benchmarks.

It implements the wire contract of `docs/iredadmin-pro-api.md` for the routes Maildesk uses:
login, domains (list, get, create, delete) and mail users (list, get, create, delete), in
both dialects, with the server's route patterns (404 / 405 / trailing-slash 303), cookie
sessions with idle expiry and IP binding, the validation rules and error codes of §6 to §8,
per-domain limits and quota arithmetic (§7.4).

Other routes of the real API are not emulated and answer 404, as a server without them would.

This module is the API's logic without sockets: `Emulator.handle()` takes an `ApiRequest` and
returns a `Reply`. `apps.iredadmin.emulator_http` serves it over HTTP, with the control API
that tests use to set knobs (latency, faults, forced session expiry) and read counters.
Everything here is guarded by one lock, so any number of server threads may call in.
"""

import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from apps.iredadmin import validators

CURRENT = "current"
LEGACY = "legacy"

FAULT_KINDS = ("status", "html", "non_json", "drop", "delay", "error")
SUPPORTED_HASH_SCHEMES = (
    "SSHA",
    "SSHA512",
    "SHA512",
    "CRYPT",
    "BCRYPT",
    "SHA512-CRYPT",
    "SHA256-CRYPT",
    "MD5",
    "PLAIN-MD5",
    "PLAIN",
    "CRAM-MD5",
    "NTLM",
)


@dataclass
class Config:
    """Knobs. Change them with `Emulator.configure()` or `POST /_emulator/config`."""

    #: Seconds added to every API call (the server "thinking").
    latency: float = 0.0
    #: Idle seconds before a session expires (the server's SESSION_TIMEOUT).
    session_timeout: float = 1800.0
    #: Every N-th API call (logins excluded) finds its session expired; 0 = never.
    expire_session_every: int = 0
    #: How a forced expiry shows: "login_required" (JSON) or "redirect" (303 SESSION_EXPIRED).
    session_expiry_style: str = "login_required"
    #: When False every API path answers 404, like a server with ENABLE_RESTFUL_API = False.
    api_enabled: bool = True
    #: API client allow-list (IPs, `a.b.c` prefixes, `a.b.c.x-y` ranges, CIDRs); empty = all.
    allowed_clients: list[str] = field(default_factory=list)
    #: Where global admins may log in from; empty = anywhere.
    global_admin_ips: list[str] = field(default_factory=list)
    min_password_length: int = validators.DEFAULT_MIN_PASSWORD_LENGTH
    max_password_length: int = 0


@dataclass
class Fault:
    """One injected misbehaviour, consumed by the next matching API call(s).

    kinds: `status` (HTTP `status` with an HTML body), `html` (200 with an HTML login page),
    `non_json` (200 with a truncated JSON body), `drop` (close the connection, no answer),
    `delay` (answer `delay` seconds late), `error` (a JSON failure with `_msg` = `message`).
    With `effect=True` the operation is performed first and the misbehaviour hides its
    outcome (an ambiguous answer); otherwise nothing is performed. A `delay` always performs
    the operation: before the wait with `effect=True`, after it otherwise, as a slow server
    does even when the caller has given up.
    """

    kind: str
    method: str | None = None
    route: str | None = None
    target: str | None = None
    times: int = 1
    effect: bool = False
    status: int = 500
    delay: float = 0.0
    message: str = ""

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}")
        if self.times < 0 or self.delay < 0:
            raise ValueError("times and delay cannot be negative")
        if self.method:
            self.method = self.method.upper()

    def matches(self, method: str, route: str, target: str) -> bool:
        return (
            (self.method is None or self.method == method)
            and (self.route is None or self.route == route)
            and (self.target is None or self.target == target)
        )


@dataclass
class ApiRequest:
    method: str
    path: str  # percent-decoded, without the mount prefix: "/api/user/jane@example.com"
    query: dict[str, str]
    form: dict[str, str]
    session_id: str | None
    client_ip: str


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    session_id: str | None = None
    expire_cookie: bool = False
    location: str | None = None
    drop: bool = False


@dataclass
class _Domain:
    domain: str
    description: str = ""
    language: str = ""
    maxquota: int = 0
    default_user_quota: int = 0
    max_user_quota: int = 0
    mailboxes: int = 0
    aliases: int = 0
    maillists: int = 0
    transport: str = "dovecot"
    min_passwd_length: int | None = None
    active: int = 1
    created: str = ""
    modified: str = ""


@dataclass
class _Mailbox:
    username: str
    domain: str
    password: str  # a salted hash, never the password itself
    name: str = ""
    language: str = ""
    quota: int = 0
    active: int = 1
    created: str = ""
    modified: str = ""
    passwordlastchange: str = ""


@dataclass
class _Admin:
    username: str
    password: str  # a salted hash
    global_admin: bool = True
    domains: set[str] = field(default_factory=set)


@dataclass
class _Session:
    admin: str
    client_ip: str
    last_seen: float


class _Refusal(Exception):
    """A JSON failure answer (`_msg` = code) raised from deep inside a handler."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _hash_password(password: str) -> str:
    salt = secrets.token_bytes(8)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return "{SSHA512}" + (digest + salt).hex()


def _password_matches(stored: str, password: str) -> bool:
    raw = bytes.fromhex(stored.removeprefix("{SSHA512}"))
    digest, salt = raw[:64], raw[64:]
    return hmac.compare_digest(hashlib.sha512(password.encode() + salt).digest(), digest)


def _to_int(raw: str | None, default: int = 0) -> int:
    """The server's lenient integer parsing: anything unparsable is the default."""
    try:
        return int(str(raw).strip())
    except (TypeError, ValueError):
        return default


def ip_allowed(ip: str, allowed: list[str]) -> bool:
    """The server's `is_allowed_ip` (§7.2): exact, `a.b.c` prefix, `a.b.c.x-y` range, CIDR."""
    if not allowed:
        return True
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for entry in allowed:
        if entry == ip:
            return True
        if "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        elif re.fullmatch(r"\d{1,3}\.\d{1,3}\.\d{1,3}", entry) and ip.startswith(entry + "."):
            return True
        elif match := re.fullmatch(r"(\d{1,3}\.\d{1,3}\.\d{1,3})\.(\d{1,3})-(\d{1,3})", entry):
            prefix, low, high = match.group(1), int(match.group(2)), int(match.group(3))
            head, _, last = ip.rpartition(".")
            if head == prefix and last.isdigit() and low <= int(last) <= high:
                return True
    return False


# Routes in the server's order. The captured value is matched case-sensitively, then
# lower-cased, as web.py does.
_ROUTES: list[tuple[str, re.Pattern[str]]] = [
    ("login", re.compile(r"/api/login")),
    ("domains", re.compile(r"/api/domains")),
    ("domain", re.compile(rf"/api/domain/({validators.DOMAIN_ROUTE_PATTERN})")),
    ("users", re.compile(rf"/api/users/({validators.DOMAIN_ROUTE_PATTERN})")),
    ("user", re.compile(rf"/api/user/({validators.MAIL_ROUTE_PATTERN})")),
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
    },
    LEGACY: {
        "login": {"GET", "POST"},
        "domain": {"POST", "DELETE"},
        "user": {"POST", "DELETE"},
    },
}


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
        self._domains: dict[str, _Domain] = {}
        self._mailboxes: dict[str, _Mailbox] = {}
        self._admins: dict[str, _Admin] = {}
        self._sessions: dict[str, _Session] = {}
        self._faults: list[Fault] = []
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
            self._admins[username.strip().lower()] = _Admin(
                username=username.strip().lower(),
                password=_hash_password(password),
                global_admin=global_admin,
                domains={domain.lower() for domain in domains},
            )

    def add_domain(self, domain: str, **values: Any) -> None:
        """Create a domain directly (seeding): values are `_Domain` columns, e.g. maxquota."""
        with self._lock:
            now = _now_iso()
            self._domains[domain.lower()] = _Domain(
                domain=domain.lower(), created=now, modified=now, **values
            )
            self._save_state()

    def add_mailbox(self, email: str, password: str, *, name: str = "", quota: int = 0) -> None:
        """Create a mailbox directly (seeding), e.g. one that exists before Maildesk acts."""
        with self._lock:
            address = email.lower()
            domain = address.rpartition("@")[2]
            if domain not in self._domains:
                raise ValueError(f"domain {domain} does not exist")
            now = _now_iso()
            self._mailboxes[address] = _Mailbox(
                username=address,
                domain=domain,
                password=_hash_password(password),
                name=name,
                quota=quota,
                created=now,
                modified=now,
                passwordlastchange=now,
            )
            self._save_state()

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs (see `Config`); unknown names are refused. Returns the new config."""
        known = {f.name: f.type for f in fields(Config)}
        unknown = sorted(set(knobs) - set(known))
        if unknown:
            raise ValueError(f"unknown knobs: {', '.join(unknown)}")
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
            self._stats: dict[str, Any] = {
                "requests": 0,
                "connections": 0,
                "logins": 0,
                "failed_logins": 0,
                "sessions_expired": 0,
                "faults_injected": 0,
                "in_flight": 0,
                "in_flight_max": 0,
            }
            self._calls: Counter[str] = Counter()
            self._api_calls = 0  # logins excluded; drives expire_session_every
            self._created: Counter[str] = Counter()
            self._deleted: Counter[str] = Counter()

    def reset(self) -> None:
        """Forget every domain, mailbox, session, fault and counter (admins stay)."""
        with self._lock:
            self._domains.clear()
            self._mailboxes.clear()
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
            return {"domains": sorted(self._domains), "users": sorted(self._mailboxes)}

    def mailbox(self, email: str) -> dict[str, Any] | None:
        """A mailbox's stored row without its hash (for tests), or None."""
        with self._lock:
            mailbox = self._mailboxes.get(email.lower())
            return self._user_profile(mailbox) if mailbox else None

    def domain(self, domain: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._domains.get(domain.lower())
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
            if route != "login":
                self._api_calls += 1
            fault = self._take_fault(request.method, route, value)
        if fault is None:
            return self._serve(request, route, value)
        return self._misbehave(fault, request, route, value)

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

    def _misbehave(self, fault: Fault, request: ApiRequest, route: str, value: str) -> Reply:
        if fault.kind == "delay":
            if not fault.effect:
                time.sleep(fault.delay)
            reply = self._serve(request, route, value)
            if fault.effect:
                time.sleep(fault.delay)
            return reply
        session_id = None
        if fault.effect:
            session_id = self._serve(request, route, value).session_id
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

    def _serve(self, request: ApiRequest, route: str, value: str) -> Reply:
        with self._lock:
            if not ip_allowed(request.client_ip, self.config.allowed_clients):
                return self._json(self._failure("NOT_AUTHORIZED"))
            if route == "login":
                return self._login(request)
            session_id, admin, expired_reply = self._session(request)
            if expired_reply is not None:
                return expired_reply
            try:
                if admin is None:
                    raise _Refusal("LOGIN_REQUIRED")
                handler = getattr(self, f"_{request.method.lower()}_{route}")
                data = handler(request, value, admin)
            except _Refusal as refusal:
                return self._json(self._failure(refusal.code), session_id=session_id)
            return self._json(self._success(data), session_id=session_id)

    def _session(self, request: ApiRequest) -> tuple[str, _Admin | None, Reply | None]:
        """The caller's session: (its id, its admin, a 303 reply if it just expired).

        An anonymous caller gets (None, None, None): `handle` gives its answer a new cookie.
        """
        now = time.monotonic()
        session = self._sessions.get(request.session_id or "")
        if session and now - session.last_seen > self.config.session_timeout:
            del self._sessions[request.session_id]
            self._stats["sessions_expired"] += 1
            session = None
        every = self.config.expire_session_every
        if session and every and self._api_calls % every == 0:
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
        elif admin is None or not _password_matches(admin.password, password):
            code = "INVALID_CREDENTIALS"
        if code:
            self._stats["failed_logins"] += 1
            return self._json(self._failure(code))
        if admin.global_admin and not ip_allowed(request.client_ip, self.config.global_admin_ips):
            self._stats["failed_logins"] += 1
            return self._redirect(f"{self.prefix}/login?msg=NOT_ALLOWED_IP")
        session_id = secrets.token_hex(20)
        self._sessions[session_id] = _Session(admin.username, request.client_ip, time.monotonic())
        self._stats["logins"] += 1
        return self._json(self._success(None), session_id=session_id)

    # --- Operations (called with the lock held; raise _Refusal to answer a failure) -----------

    def _get_domains(self, request: ApiRequest, value: str, admin: _Admin) -> Any:
        visible = [d for name, d in sorted(self._domains.items()) if self._may_manage(admin, name)]
        if "disabled_only" in request.query:
            visible = [d for d in visible if not d.active]
        if "name_only" in request.query:
            return [d.domain for d in visible]
        return {d.domain: self._domain_profile(d, listing=True) for d in visible}

    def _get_domain(self, request: ApiRequest, domain: str, admin: _Admin) -> Any:
        self._require_domain_access(admin, domain)
        found = self._domains.get(domain)
        if found is None:
            raise _Refusal("INVALID_DOMAIN_NAME")
        return self._domain_profile(found)

    def _post_domain(self, request: ApiRequest, domain: str, admin: _Admin) -> Any:
        if not admin.global_admin:
            raise _Refusal("PERMISSION_DENIED")
        if not validators.server_accepts_domain(domain):
            raise _Refusal("INVALID_DOMAIN_NAME")
        if domain in self._domains:
            raise _Refusal("ALREADY_EXISTS")
        form = {**request.query, **request.form}
        names = self._field_names()
        language = form.get(names["language"], "")
        now = _now_iso()
        self._domains[domain] = _Domain(
            domain=domain,
            description=form.get(names["name"], ""),
            language=language if language in validators.LANGUAGES else "",
            maxquota=max(_to_int(form.get("quota")), 0),
            default_user_quota=max(_to_int(form.get("defaultQuota")), 0),
            max_user_quota=max(_to_int(form.get("maxUserQuota")), 0),
            mailboxes=_to_int(form.get("numberOfUsers")),
            aliases=_to_int(form.get("numberOfAliases")),
            maillists=_to_int(form.get("numberOfLists")),
            transport=form.get("transport") or "dovecot",
            created=now,
            modified=now,
        )
        self._created[f"domain:{domain}"] += 1
        self._save_state()
        return None

    def _delete_domain(self, request: ApiRequest, domain: str, admin: _Admin) -> Any:
        self._require_domain_access(admin, domain)
        # No existence check: deleting a missing domain succeeds. Its mailboxes go with it.
        if self._domains.pop(domain, None) is not None:
            self._deleted[f"domain:{domain}"] += 1
        for address in [a for a, m in self._mailboxes.items() if m.domain == domain]:
            del self._mailboxes[address]
            self._deleted[f"user:{address}"] += 1
        self._save_state()
        return None

    def _get_users(self, request: ApiRequest, domain: str, admin: _Admin) -> Any:
        self._require_domain_access(admin, domain)
        if domain not in self._domains:
            raise _Refusal("INVALID_DOMAIN_NAME")
        boxes = [m for _, m in sorted(self._mailboxes.items()) if m.domain == domain]
        if "disabled_only" in request.query:
            boxes = [m for m in boxes if not m.active]
        if "email_only" in request.query:
            return [m.username for m in boxes]
        return [self._user_profile(m) for m in boxes]

    def _get_user(self, request: ApiRequest, email: str, admin: _Admin) -> Any:
        self._require_domain_access(admin, email.rpartition("@")[2])
        found = self._mailboxes.get(email)
        if found is None:
            raise _Refusal("NO_SUCH_ACCOUNT")
        return self._user_profile(found)

    def _post_user(self, request: ApiRequest, email: str, admin: _Admin) -> Any:
        # The checks run in the server's order (§8 item 4).
        domain_name = email.rpartition("@")[2]
        self._require_domain_access(admin, domain_name)
        if not validators.server_accepts_new_mailbox(email):
            raise _Refusal("INVALID_MAIL")
        local, _, _ = email.partition("@")
        if f"{local.partition('+')[0]}@{domain_name}" in self._mailboxes:
            raise _Refusal("ALREADY_EXISTS")
        domain = self._domains.get(domain_name)
        if domain is None:
            raise _Refusal("INVALID_DOMAIN_NAME")
        existing = sum(1 for m in self._mailboxes.values() if m.domain == domain_name)
        if domain.mailboxes == -1:
            raise _Refusal("NOT_ALLOWED")
        if domain.mailboxes > 0 and existing >= domain.mailboxes:
            raise _Refusal("EXCEEDED_DOMAIN_ACCOUNT_LIMIT")
        form = {**request.query, **request.form}
        names = self._field_names()
        quota = self._assign_quota(domain, form.get(names["quota"]))
        password_hash = form.get("password_hash", "")
        if password_hash:
            scheme = re.match(r"\{([A-Z0-9\-]+)\}", password_hash.upper())
            if not scheme or scheme.group(1) not in SUPPORTED_HASH_SCHEMES:
                raise _Refusal("INVALID_PASSWORD_SCHEME")
            stored = password_hash
        else:
            problems = validators.password_policy_violations(
                form.get("password", ""),
                min_length=domain.min_passwd_length or self.config.min_password_length,
                max_length=self.config.max_password_length,
            )
            if problems:
                raise _Refusal(",".join(problems))
            stored = _hash_password(form["password"])
        # Absent: the domain's default language. Unknown: silently blank (contract §7.1).
        language = form.get(names["language"], domain.language)
        now = _now_iso()
        self._mailboxes[email] = _Mailbox(
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
        self._created[f"user:{email}"] += 1
        self._save_state()
        return None

    def _delete_user(self, request: ApiRequest, email: str, admin: _Admin) -> Any:
        self._require_domain_access(admin, email.rpartition("@")[2])
        if self._mailboxes.pop(email, None) is not None:
            self._deleted[f"user:{email}"] += 1
            self._save_state()
        return None

    # --- Rules ---------------------------------------------------------------------------------

    def _assign_quota(self, domain: _Domain, raw: str | None) -> int:
        """The server's `assign_given_mailbox_quota` (contract §7.4), in MB."""
        quota = max(_to_int(raw, default=domain.default_user_quota), 0)
        if domain.maxquota > 0:
            allocated = sum(m.quota for m in self._mailboxes.values() if m.domain == domain.domain)
            spare = domain.maxquota - allocated
            if spare <= 0:
                raise _Refusal("EXCEEDED_DOMAIN_QUOTA_SIZE")
            if quota == 0:
                quota = domain.default_user_quota or domain.max_user_quota or spare
            quota = min(quota, spare)
        if domain.max_user_quota > 0 and (quota == 0 or quota > domain.max_user_quota):
            quota = domain.max_user_quota
        return quota

    def _may_manage(self, admin: _Admin, domain: str) -> bool:
        return admin.global_admin or domain in admin.domains

    def _require_domain_access(self, admin: _Admin, domain: str) -> None:
        if not self._may_manage(admin, domain):
            raise _Refusal("PERMISSION_DENIED")

    def _field_names(self) -> dict[str, str]:
        if self.dialect == LEGACY:
            return {"name": "cn", "language": "preferredLanguage", "quota": "mailQuota"}
        return {"name": "name", "language": "language", "quota": "quota"}

    # --- Answers -------------------------------------------------------------------------------

    def _success(self, data: Any) -> dict[str, Any]:
        if self.dialect == LEGACY:
            return {"success": True}
        return {"_success": True} if data is None else {"_success": True, "_data": data}

    def _failure(self, code: str) -> dict[str, Any]:
        if self.dialect == LEGACY:
            return {"success": False, "msg": code}
        return {"_success": False, "_msg": code}

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

    def _domain_profile(self, domain: _Domain, *, listing: bool = False) -> dict[str, Any]:
        profile: dict[str, Any] = {
            "domain": domain.domain,
            "description": domain.description,
            "disclaimer": "",
            "aliases": domain.aliases,
            "mailboxes": domain.mailboxes,
            "maillists": domain.maillists,
            "maxquota": domain.maxquota,
            "quota": 0,
            "transport": domain.transport,
            "backupmx": 0,
            "settings": {
                key: value
                for key, value in {
                    "default_language": domain.language,
                    "default_user_quota": domain.default_user_quota,
                    "max_user_quota": domain.max_user_quota,
                    "min_passwd_length": domain.min_passwd_length,
                }.items()
                if value
            },
            "created": domain.created,
            "modified": domain.modified,
            "expired": "9999-12-31T00:00:00",
            "active": domain.active,
        }
        if listing:
            return profile
        users = [m for m in self._mailboxes.values() if m.domain == domain.domain]
        profile.update(
            sbcc_addr="",
            rbcc_addr="",
            catchall=[],
            relayhost="",
            num_existing_users=len(users),
            alias_domains=[],
            allocated_quota=sum(m.quota for m in users),
        )
        return profile

    def _user_profile(self, mailbox: _Mailbox) -> dict[str, Any]:
        local = mailbox.username.partition("@")[0]
        return {
            "username": mailbox.username,
            "name": mailbox.name,
            "language": mailbox.language,
            "domain": mailbox.domain,
            "transport": "",
            "department": "",
            "rank": "normal",
            "employeeid": "",
            "mailboxformat": "maildir",
            "mailboxfolder": "Maildir",
            "storagebasedirectory": "/var/vmail",
            "storagenode": "vmail1",
            "maildir": f"{mailbox.domain}/{local[:1]}/{local[:2]}/{local[:3]}/{local}/",
            "quota": mailbox.quota,
            "isadmin": 0,
            "isglobaladmin": 0,
            "settings": {},
            "passwordlastchange": mailbox.passwordlastchange,
            "created": mailbox.created,
            "modified": mailbox.modified,
            "expired": "9999-12-31T00:00:00",
            "active": mailbox.active,
            "aliases": [],
            "mailing_aliases": [],
            "mailing_lists": [],
            "forwardings": [mailbox.username],
            "stored_bytes": 0,
            "stored_messages": 0,
            "last_login": "",
        }

    # --- Persistence (optional, for `make run`) ------------------------------------------------

    def _save_state(self) -> None:
        if self._state_file is None:
            return
        state = {
            "domains": [asdict(d) for d in self._domains.values()],
            "mailboxes": [asdict(m) for m in self._mailboxes.values()],
        }
        temporary = self._state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=1))
        os.replace(temporary, self._state_file)

    def _load_state(self) -> None:
        """Read the rows saved by `_save_state` (only called when the file exists)."""
        state = json.loads(self._state_file.read_text())
        self._domains = {d["domain"]: _Domain(**d) for d in state.get("domains", [])}
        self._mailboxes = {m["username"]: _Mailbox(**m) for m in state.get("mailboxes", [])}
