"""Sealing secrets at rest (new mailbox passwords) with MultiFernet.

`MAILDESK_ENCRYPTION_KEYS` lists Fernet keys, newest first: the first seals, all of them
unseal, so a key can be rotated without losing what was sealed before (`manage.py rotate_keys`
re-seals with the newest, then the old key can be removed).
"""

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables


class SealError(Exception):
    """A sealed value cannot be opened: it was sealed with a key that is no longer configured."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError:
        raise ImproperlyConfigured(
            "MAILDESK_ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe "
            "base64-encoded bytes)."
        ) from None


def _configured() -> MultiFernet:
    keys = tuple(settings.MAILDESK_ENCRYPTION_KEYS)
    if not keys:
        # Development only (production refuses to start without keys): a key derived from
        # SECRET_KEY, so that the web process and the worker agree without configuration.
        digest = hashlib.sha256(b"maildesk-encryption:" + settings.SECRET_KEY.encode()).digest()
        keys = (base64.urlsafe_b64encode(digest).decode(),)
    return _fernet(keys)


@sensitive_variables("plaintext")
def seal(plaintext: str) -> str:
    return _configured().encrypt(plaintext.encode()).decode()


def unseal(token: str) -> str:
    try:
        return _configured().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SealError("sealed with a key that is not in MAILDESK_ENCRYPTION_KEYS") from None


def reseal(token: str) -> str:
    """The same secret, sealed with the newest key."""
    try:
        return _configured().rotate(token.encode()).decode()
    except InvalidToken:
        raise SealError("sealed with a key that is not in MAILDESK_ENCRYPTION_KEYS") from None
