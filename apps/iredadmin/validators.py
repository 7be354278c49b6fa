"""The iRedAdmin-Pro server's validation rules (contract §2, §7), in two layers.

1. The server's own rules, stated faithfully: route patterns, `is_domain`, the email rules,
   the password policy. The emulator enforces exactly these, and the client refuses to build a
   URL that would not match a route.
2. The portal's rules for forms (`validate_*`): never looser than the server's, and stricter
   where the server accepts nonsense (empty DNS labels, `a..b.com`), so that a request the
   server would refuse is refused when it is typed, with a sentence saying why.
"""

import re
import secrets
import string

import idna
from django.core.exceptions import ValidationError

# --- The server's rules ----------------------------------------------------------------------

# URL routes (web.py): anchored, case-sensitive, Unicode-aware `\w`; values are lower-cased
# only after matching, so an upper-case TLD in a path is a 404.
DOMAIN_ROUTE_PATTERN = r"[\w\-][\w\-\.]*\.[a-z0-9\-]{2,25}"
MAIL_ROUTE_PATTERN = r"[\w\-\#][\w\-\.\+\=\/\&\#]*@[\w\-][\w\-\.]*\.[a-zA-Z0-9\-]{2,25}"

_FLAGS = re.IGNORECASE | re.DOTALL | re.ASCII
_DOMAIN_RE = re.compile(r"[\w\-][\w\-\.]*\.[a-z0-9\-]{2,25}", _FLAGS)
_EMAIL_RE = re.compile(r"[\w\-\#][\w\-\.\+\=\/\&\#]*@[\w\-][\w\-\.]*\.[a-zA-Z0-9\-]{2,25}", _FLAGS)
# New local accounts (Pro 4.1+): no `+` and no `/` in the local part.
_AUTH_EMAIL_RE = re.compile(r"[\w\-\#][\w\-\=\.\&\#]*@[\w\-][\w\-\.]*\.[a-zA-Z0-9\-]{2,25}", _FLAGS)
_DOMAIN_FORBIDDEN = set("~!#$%^&*()+\\/ ")

# The code default of PASSWORD_SPECIAL_CHARACTERS. The docs page also lists `\` and `^`; the
# portal demands one of the characters both agree on.
PASSWORD_SPECIAL_CHARACTERS = "#$%&*+-,.:;!=<>'\"?@[]/(){}_`~"  # noqa: S105 (not a password)
DEFAULT_MIN_PASSWORD_LENGTH = 8

# Languages shipped with iRedAdmin-Pro's translations; the server blanks any other value.
LANGUAGES: dict[str, str] = {
    "en_US": "English (US)",
    "bg_BG": "Bulgarian",
    "cs_CZ": "Czech",
    "da_DK": "Danish",
    "de_DE": "German",
    "es_ES": "Spanish",
    "fi_FI": "Finnish",
    "fr_FR": "French",
    "hu_HU": "Hungarian",
    "it_IT": "Italian",
    "ja_JP": "Japanese",
    "ko_KR": "Korean",
    "nl_NL": "Dutch",
    "pl_PL": "Polish",
    "pt_BR": "Portuguese (Brazil)",
    "ro_RO": "Romanian",
    "ru_RU": "Russian",
    "sl_SI": "Slovenian",
    "sv_SE": "Swedish",
    "tr_TR": "Turkish",
    "uk_UA": "Ukrainian",
    "zh_CN": "Chinese (Simplified)",
    "zh_TW": "Chinese (Traditional)",
}

# Quotas and limits are stored in SQL integer columns; bigger values are typing mistakes.
MAX_QUOTA_MB = 2**31 - 1
MAX_ACCOUNT_LIMIT = 2**31 - 1


def matches_domain_route(value: str) -> bool:
    return re.fullmatch(DOMAIN_ROUTE_PATTERN, value) is not None


def matches_mail_route(value: str) -> bool:
    return re.fullmatch(MAIL_ROUTE_PATTERN, value) is not None


def server_accepts_domain(value: str) -> bool:
    """`is_domain()`: lower-cased, none of `~!#$%^&*()+\\/` or space, a dot, the pattern."""
    domain = value.lower()
    if "." not in domain or any(char in _DOMAIN_FORBIDDEN for char in domain):
        return False
    return _DOMAIN_RE.fullmatch(domain) is not None


def server_accepts_email(value: str) -> bool:
    return _EMAIL_RE.fullmatch(value) is not None


def server_accepts_new_mailbox(value: str) -> bool:
    return _AUTH_EMAIL_RE.fullmatch(value) is not None


def password_policy_violations(
    password: str,
    *,
    min_length: int = DEFAULT_MIN_PASSWORD_LENGTH,
    max_length: int = 0,
) -> list[str]:
    """The server's password checks (§7.3), as the list of `PW_*` codes it would join."""
    if not password:
        return ["PW_EMPTY"]
    problems = []
    if any(not 32 <= ord(char) <= 126 for char in password):
        problems.append("PW_NON_ASCII")
    if len(password) < min_length:
        problems.append("PW_SHORTER_THAN_MIN_LENGTH")
    if max_length > 0 and len(password) > max_length:
        problems.append("PW_GREATER_THAN_MAX_LENGTH")
    if not any(char in string.ascii_letters for char in password):
        problems.append("PW_NO_LETTER")
    if not any(char in string.ascii_uppercase for char in password):
        problems.append("PW_NO_UPPERCASE")
    if not any(char in string.digits for char in password):
        problems.append("PW_NO_DIGIT_NUMBER")
    if not any(char in PASSWORD_SPECIAL_CHARACTERS for char in password):
        problems.append("PW_NO_SPECIAL_CHAR")
    return problems


# --- Normalisation shared by the client and the forms ----------------------------------------


def normalize_domain(value: str) -> str:
    """Lower-case a domain and turn an internationalised name into its ASCII (xn--) form.

    Raises ValueError when the name cannot be encoded (empty or over-long labels, characters
    IDNA forbids).
    """
    domain = value.strip().rstrip(".").lower()
    if not domain:
        raise ValueError("empty domain name")
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(str(exc)) from None


def normalize_address(value: str) -> str:
    """Lower-case an address and encode its domain part; ValueError if it has no `@`."""
    local, at, domain = value.strip().rpartition("@")
    if not at or not local:
        raise ValueError("an address needs a local part and a domain")
    return f"{local.lower()}@{normalize_domain(domain)}"


# --- The portal's rules for forms --------------------------------------------------------------

_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?")
_TLD_RE = re.compile(r"[a-z0-9\-]{2,25}")
_LOCAL_PART_RE = re.compile(r"[a-z0-9_\-\#][a-z0-9_\-\#\&\=]*(\.[a-z0-9_\-\#\&\=]+)*")


def validate_domain_name(value: str) -> str:
    """Return the normalised domain, or raise ValidationError with a sentence for people."""
    try:
        domain = normalize_domain(value)
    except ValueError:
        raise ValidationError(
            "Enter a domain name such as example.com.", code="INVALID_DOMAIN_NAME"
        ) from None
    labels = domain.split(".")
    well_formed = (
        len(domain) <= 253
        and len(labels) >= 2
        and all(_LABEL_RE.fullmatch(label) for label in labels)
        and _TLD_RE.fullmatch(labels[-1]) is not None
        and not labels[-1].isdigit()
    )
    if not well_formed or not server_accepts_domain(domain) or not matches_domain_route(domain):
        raise ValidationError(
            "Enter a domain name such as example.com: letters, digits and hyphens in "
            "dot-separated parts, ending in a top-level domain of 2 to 25 characters.",
            code="INVALID_DOMAIN_NAME",
        )
    return domain


def validate_new_mailbox_address(value: str) -> str:
    """Return the normalised address of a new mailbox, or raise ValidationError."""
    local, at, domain = value.strip().rpartition("@")
    if not at or not local:
        raise ValidationError("Enter a full address such as jane@example.com.", code="INVALID_MAIL")
    if not local.isascii():
        # Checked before lower-casing: some letters (the Kelvin sign) would turn into ASCII
        # ones, and the request would act on another mailbox than the one typed.
        raise ValidationError(
            "The part before @ may contain letters, digits and . _ - # & = only (no accents "
            "or other alphabets).",
            code="INVALID_MAIL",
        )
    local = local.lower()
    if "+" in local or "/" in local:
        raise ValidationError(
            "A new mailbox address cannot contain '+' or '/'.", code="INVALID_MAIL"
        )
    if len(local) > 64 or not _LOCAL_PART_RE.fullmatch(local):
        raise ValidationError(
            "The part before @ may contain letters, digits and . _ - # & = (no dot at the "
            "start or end, no two dots in a row), at most 64 characters.",
            code="INVALID_MAIL",
        )
    address = f"{local}@{validate_domain_name(domain)}"
    if not server_accepts_new_mailbox(address) or not matches_mail_route(address):
        raise ValidationError("Enter a valid email address.", code="INVALID_MAIL")
    return address


def validate_mailbox_password(
    password: str,
    *,
    min_length: int = DEFAULT_MIN_PASSWORD_LENGTH,
    max_length: int = 0,
) -> None:
    """Raise ValidationError listing every password-policy problem the server would report."""
    problems = password_policy_violations(password, min_length=min_length, max_length=max_length)
    if not problems:
        return
    sentences = {
        "PW_EMPTY": "Enter a password.",
        "PW_NON_ASCII": "Use only printable ASCII characters and spaces.",
        "PW_SHORTER_THAN_MIN_LENGTH": f"Use at least {min_length} characters.",
        "PW_GREATER_THAN_MAX_LENGTH": f"Use at most {max_length} characters.",
        "PW_NO_LETTER": "Include a letter.",
        "PW_NO_UPPERCASE": "Include an upper-case letter.",
        "PW_NO_DIGIT_NUMBER": "Include a digit.",
        "PW_NO_SPECIAL_CHAR": f"Include one of {PASSWORD_SPECIAL_CHARACTERS}",
    }
    raise ValidationError(
        [ValidationError(sentences[code], code=code) for code in problems],
    )


def validate_quota_mb(value: int) -> int:
    """A quota in MB: 0 means unlimited (or the domain's default, for a mailbox)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_QUOTA_MB:
        raise ValidationError(
            f"Enter a whole number of MB between 0 (no limit) and {MAX_QUOTA_MB}.",
            code="INVALID_QUOTA_SIZE",
        )
    return value


def validate_account_limit(value: int) -> int:
    """A per-domain account limit: 0 means unlimited, -1 means no new accounts allowed."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not -1 <= value <= MAX_ACCOUNT_LIMIT
    ):
        raise ValidationError(
            "Enter -1 (none allowed), 0 (no limit) or a positive whole number.",
            code="INVALID_NUMBER",
        )
    return value


def validate_language(value: str) -> str:
    if value not in LANGUAGES:
        raise ValidationError("Choose a language from the list.", code="INVALID_LANGUAGE")
    return value


def generate_password(length: int = 16) -> str:
    """A random password that satisfies the server's default policy."""
    if length < 8:
        raise ValueError("generated passwords are at least 8 characters long")
    # Avoid characters that are easy to misread or to mangle when pasted into a ticket.
    specials = "#$%&*+-=?@_"
    alphabet = string.ascii_letters + string.digits + specials
    required = [
        secrets.choice(string.ascii_uppercase),
        secrets.choice(string.ascii_lowercase),
        secrets.choice(string.digits),
        secrets.choice(specials),
    ]
    chars = required + [secrets.choice(alphabet) for _ in range(length - len(required))]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)
