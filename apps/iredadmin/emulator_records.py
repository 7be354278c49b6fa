"""The emulator's data and the server's rules it applies: records, knobs, faults, quotas.

Split from `emulator.py`, which holds the request handling. Nothing here does I/O.
"""

import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from apps.iredadmin import validators

FAULT_KINDS = ("status", "html", "non_json", "drop", "delay", "error", "expire")
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
    `delay` (answer `delay` seconds late), `error` (a JSON failure with `_msg` = `message`),
    `expire` (the caller's session ends, answered as `session_expiry_style` says).
    `times` is how many matching calls it affects (0: every one, until cleared).
    With `effect=True` the operation is performed first and the misbehaviour hides its
    outcome (an ambiguous answer); otherwise nothing is performed. A `delay` always performs
    the operation: before the wait with `effect=True`, after it otherwise, as a slow server
    does even when the caller has given up. Any other kind with a `delay` misbehaves that
    many seconds late (a `drop` after a delay is a read timeout for a patient caller).
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
class Domain:
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
class Mailbox:
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
class Admin:
    username: str
    password: str  # a salted hash
    global_admin: bool = True
    domains: set[str] = field(default_factory=set)


@dataclass
class Session:
    admin: str
    client_ip: str
    last_seen: float


class Refusal(Exception):
    """A JSON failure answer (`_msg` = code) raised from deep inside a handler."""

    def __init__(self, code: str | None) -> None:
        super().__init__(code)
        self.code = code


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(8)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return "{SSHA512}" + (digest + salt).hex()


def password_matches(stored: str, password: str) -> bool:
    raw = bytes.fromhex(stored.removeprefix("{SSHA512}"))
    digest, salt = raw[:64], raw[64:]
    return hmac.compare_digest(hashlib.sha512(password.encode() + salt).digest(), digest)


def to_int(raw: str | None, default: int = 0) -> int:
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


def assign_quota(domain: Domain, allocated: int, raw: str | None) -> int:
    """The server's `assign_given_mailbox_quota` (contract §7.4), in MB.

    `allocated` is the sum of the domain's mailbox quotas; `raw` the requested quota field.
    With no domain quota but a per-user maximum, 0 ("unlimited") becomes that maximum: the
    contract's "capped to max_user_quota" is read as winning over "0 stays 0".
    """
    quota = max(to_int(raw, default=domain.default_user_quota), 0)
    if domain.maxquota > 0:
        spare = domain.maxquota - allocated
        if spare <= 0:
            raise Refusal("EXCEEDED_DOMAIN_QUOTA_SIZE")
        if quota == 0:
            quota = domain.default_user_quota or domain.max_user_quota or spare
        quota = min(quota, spare)
    if domain.max_user_quota > 0 and (quota == 0 or quota > domain.max_user_quota):
        quota = domain.max_user_quota
    return quota


def domain_profile(
    domain: Domain, mailboxes: list[Mailbox], *, listing: bool = False
) -> dict[str, Any]:
    """`GET /api/domain/<d>` (§5.1); `listing` gives the shorter rows of `GET /api/domains`."""
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
    users = [m for m in mailboxes if m.domain == domain.domain]
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


def user_profile(mailbox: Mailbox) -> dict[str, Any]:
    """`GET /api/user/<mail>` (§5.2): the mailbox row without its password, plus extras."""
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


class Store:
    """Domains and mailboxes, indexed so that no operation scans every mailbox.

    Benchmarks push tens of thousands of mailboxes into one domain; counting a domain's
    mailboxes or summing its quotas on each creation would make the emulator slower the
    longer it runs. Not thread-safe by itself: the Emulator's lock guards it.
    """

    def __init__(self) -> None:
        self.domains: dict[str, Domain] = {}
        self.mailboxes: dict[str, Mailbox] = {}
        self._by_domain: dict[str, dict[str, Mailbox]] = {}
        self._allocated: dict[str, int] = {}

    def clear(self) -> None:
        self.__init__()

    def add_domain(self, domain: Domain) -> None:
        self.domains[domain.domain] = domain
        self._by_domain.setdefault(domain.domain, {})
        self._allocated.setdefault(domain.domain, 0)

    def remove_domain(self, name: str) -> list[str]:
        """Remove a domain and its mailboxes; returns the removed addresses."""
        self.domains.pop(name, None)
        removed = list(self._by_domain.pop(name, {}))
        for address in removed:
            del self.mailboxes[address]
        self._allocated.pop(name, None)
        return removed

    def add_mailbox(self, mailbox: Mailbox) -> None:
        self.mailboxes[mailbox.username] = mailbox
        self._by_domain.setdefault(mailbox.domain, {})[mailbox.username] = mailbox
        self._allocated[mailbox.domain] = self._allocated.get(mailbox.domain, 0) + mailbox.quota

    def remove_mailbox(self, address: str) -> bool:
        mailbox = self.mailboxes.pop(address, None)
        if mailbox is None:
            return False
        del self._by_domain[mailbox.domain][address]
        self._allocated[mailbox.domain] -= mailbox.quota
        return True

    def mailboxes_of(self, domain: str) -> list[Mailbox]:
        return list(self._by_domain.get(domain, {}).values())

    def count_in(self, domain: str) -> int:
        return len(self._by_domain.get(domain, {}))

    def allocated_in(self, domain: str) -> int:
        """The sum of the domain's mailbox quotas, in MB."""
        return self._allocated.get(domain, 0)

    def to_state(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "domains": [asdict(d) for d in self.domains.values()],
            "mailboxes": [asdict(m) for m in self.mailboxes.values()],
        }

    def load_state(self, state: dict[str, list[dict[str, Any]]]) -> None:
        self.clear()
        for row in state.get("domains", []):
            self.add_domain(Domain(**row))
        for row in state.get("mailboxes", []):
            self.add_mailbox(Mailbox(**row))
