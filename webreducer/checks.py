"""System checks that refuse development defaults in production (DEBUG off)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=False)
def production_defaults(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    if settings.DEBUG:
        return []
    errors: list[checks.CheckMessage] = []
    if settings.SECRET_KEY == settings.DEV_SECRET_KEY:
        errors.append(checks.Error("SECRET_KEY is the development default.", id="webreducer.E001"))
    if settings.DEV_SECRETS_KEY in settings.WR_SECRETS_KEYS:
        errors.append(
            checks.Error(
                "WR_SECRETS_KEYS contains the development key; hook secrets would be readable.",
                hint="Generate a key with Fernet.generate_key() and set WR_SECRETS_KEYS.",
                id="webreducer.E002",
            )
        )
    return errors
