"""Encryption of hook secrets at rest: authenticated encryption (Fernet: AES-128-CBC + HMAC)
under keys from the environment, with rotation (MultiFernet)."""

from __future__ import annotations

import hashlib
import hmac
from functools import cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.WR_SECRETS_KEYS))


def encrypt(value: str) -> bytes:
    return fernet().encrypt(value.encode())


def decrypt(ciphertext: bytes) -> str:
    return fernet().decrypt(bytes(ciphertext)).decode()


def fingerprint(value: str) -> str:
    # Keyed, so a fingerprint shown in the API cannot be brute-forced offline into the value.
    key = settings.WR_SECRETS_KEYS[0].encode()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:12]
