"""Typed errors of the iRedAdmin-Pro client.

Callers decide what to do from the class alone:

- `RejectedError`: the server said no (or would say no). Never retried.
- `TransientError`: network trouble, a timeout, a 5xx, a broken answer. Worth a retry.
- `AuthenticationError`: Maildesk cannot work with this server until an operator fixes the
  configuration (credentials, IP allow-list, API disabled, TLS trust, wrong URL or dialect).

`.code` is the server's message verbatim (`"ALREADY_EXISTS"`, `"PW_NO_DIGIT_NUMBER,PW_NO_LETTER"`,
even the repr of a server-side exception), or one of the client's own codes below for conditions
the server never named (`CONNECT_TIMEOUT`, `HTTP_502`, ...). `.message` is a plain sentence for
people; `describe()` gives the same sentence for a stored code.
"""

import re

# Sentences for people. Keys are the contract's codes (§6) plus the client's own codes.
_SENTENCES: dict[str, str] = {
    # Refusals of a request.
    "ALREADY_EXISTS": "The address or domain already exists on the mail server.",
    "INVALID_DOMAIN_NAME": (
        "The mail server does not accept this domain name, or the domain does not exist there."
    ),
    "INVALID_MAIL": "The mail server does not accept this email address.",
    "NO_SUCH_ACCOUNT": "The account does not exist on the mail server.",
    "NOT_ALLOWED": "The domain does not allow new accounts of this kind.",
    "EXCEEDED_DOMAIN_ACCOUNT_LIMIT": "The domain already has its maximum number of accounts.",
    "EXCEEDED_DOMAIN_QUOTA_SIZE": "The domain has no storage quota left for another mailbox.",
    "INVALID_QUOTA_SIZE": "The mail server does not accept this quota.",
    "INVALID_PASSWORD_SCHEME": "The mail server does not support this password hash scheme.",
    "PW_MISMATCH": "The two passwords differ.",
    "PW_EMPTY": "The password is empty.",
    "PW_NON_ASCII": "The password may only contain printable ASCII characters and spaces.",
    "PW_SHORTER_THAN_MIN_LENGTH": "The password is shorter than the server's minimum length.",
    "PW_GREATER_THAN_MAX_LENGTH": "The password is longer than the server's maximum length.",
    "PW_NO_LETTER": "The password needs at least one letter.",
    "PW_NO_UPPERCASE": "The password needs at least one upper-case letter.",
    "PW_NO_DIGIT_NUMBER": "The password needs at least one digit.",
    "PW_NO_SPECIAL_CHAR": "The password needs at least one special character.",
    "UNSUPPORTED_OPERATION": "This iRedAdmin-Pro release does not offer this operation.",
    "HTTP_405": "The mail server does not offer this operation (HTTP 405).",
    # Configuration an operator must fix.
    "INVALID_CREDENTIALS": (
        "The mail server refused Maildesk's admin login: check IREDADMIN_USERNAME and "
        "IREDADMIN_PASSWORD."
    ),
    "INVALID_USERNAME": "IREDADMIN_USERNAME must be the admin's full email address.",
    "EMPTY_PASSWORD": "IREDADMIN_PASSWORD is empty.",
    "NO_PASSWORD_CONFIGURED": (
        "No iRedAdmin-Pro admin password is configured: set IREDADMIN_PASSWORD or "
        "IREDADMIN_PASSWORD_FILE."
    ),
    "NOT_AUTHORIZED": (
        "The mail server does not accept API calls from this host: add Maildesk's IP address "
        "to the RESTful API clients in iRedAdmin-Pro (System > Settings)."
    ),
    "NOT_ALLOWED_IP": (
        "The mail server does not let global admins log in from Maildesk's IP address: add it "
        "to the global admin IP list in iRedAdmin-Pro."
    ),
    "PERMISSION_DENIED": (
        "The iRedAdmin-Pro account Maildesk uses lacks the rights for this: it must be a "
        "global admin."
    ),
    "API_NOT_FOUND": (
        "The mail server answered 'not found': check that IREDADMIN_URL ends in /api (usually "
        "https://<server>/iredadmin/api) and that ENABLE_RESTFUL_API = True on the server."
    ),
    "TLS_ERROR": (
        "The mail server's TLS certificate could not be verified: set IREDADMIN_CA_BUNDLE to "
        "its CA certificate."
    ),
    "DIALECT_MISMATCH": (
        "The mail server speaks a different API dialect than IREDADMIN_DIALECT says: set it "
        "to auto."
    ),
    "LOGIN_REQUIRED": (
        "The mail server forgot Maildesk's session right after logging in: check that "
        "IREDADMIN_URL uses the server's real path and that Maildesk's outgoing IP is stable."
    ),
    "SESSION_EXPIRED": (
        "The mail server keeps ending Maildesk's session: its sessions are bound to one IP "
        "address, so Maildesk's outgoing IP must not change between calls."
    ),
    "HTTP_401": "A proxy in front of the mail server asks for authentication (HTTP 401).",
    "HTTP_403": "A proxy in front of the mail server refused the call (HTTP 403).",
    # Transient trouble, retried.
    "CONNECT_TIMEOUT": "The mail server did not accept a connection in time.",
    "CONNECTION_FAILED": "Maildesk could not connect to the mail server.",
    "CONNECTION_DROPPED": "The mail server closed the connection without answering.",
    "READ_TIMEOUT": "The mail server did not answer in time.",
    "INVALID_RESPONSE": (
        "The mail server's answer was not the API's JSON (an error page from a proxy?)."
    ),
    "REDIRECTED": "The mail server answered with an unexpected redirect.",
    "TLS_CONNECTION_FAILED": "The TLS connection to the mail server broke off.",
    "ERROR_WHILE_QUERYING_DB": "The mail server could not reach its own database.",
}


def describe(code: str) -> str:
    """A plain sentence for a code, including comma-joined password codes."""
    if code in _SENTENCES:
        return _SENTENCES[code]
    parts = [part.strip() for part in code.split(",") if part.strip()]
    if len(parts) > 1 and all(part in _SENTENCES for part in parts):
        return " ".join(_SENTENCES[part] for part in parts)
    if code.startswith("HTTP_5"):
        return f"The mail server had an internal error (HTTP {code[5:]})."
    if code.startswith("HTTP_"):
        return f"The mail server answered HTTP {code[5:]}."
    if not code:
        return "The mail server refused the request without saying why."
    if not re.fullmatch(r"[A-Z][A-Z0-9_]*(,[A-Z][A-Z0-9_]*)*", code):
        return "The mail server reported an internal error (the details are in the audit log)."
    return f"The mail server refused the request ({code})."


class IRedAdminError(Exception):
    """Any failure of an iRedAdmin-Pro call.

    `may_have_taken_effect` is True when the server may have performed the change before the
    failure became visible (a read timeout after a POST, a dropped answer, an ALREADY_EXISTS
    answering the repeat of an attempt whose first answer was lost). Callers reconcile such
    outcomes by reading the account back instead of trusting the error.
    """

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        may_have_taken_effect: bool = False,
    ) -> None:
        self.code = code
        self.message = message or describe(code)
        self.may_have_taken_effect = may_have_taken_effect
        super().__init__(f"{code}: {self.message}" if code else self.message)

    @property
    def codes(self) -> list[str]:
        """The server's codes one by one (the password policy joins several with commas)."""
        return [part.strip() for part in self.code.split(",") if part.strip()]


class AuthenticationError(IRedAdminError):
    """The portal cannot use the server until an operator fixes its configuration."""


class TransientError(IRedAdminError):
    """Network trouble, a timeout, a 5xx or a broken answer: retrying may succeed."""


class RejectedError(IRedAdminError):
    """The server refused the request (or would have): retrying cannot help."""
