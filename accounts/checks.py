"""System checks for the account settings: email-only passwordless sign-in, sane limits."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security)
def accounts_settings(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    if set(getattr(settings, "ACCOUNT_LOGIN_METHODS", ())) != {"email"}:
        errors.append(
            checks.Error(
                "ACCOUNT_LOGIN_METHODS must be {'email'}: accounts are keyed by email address.",
                id="accounts.E001",
            )
        )
    if any(f.startswith("password") for f in getattr(settings, "ACCOUNT_SIGNUP_FIELDS", [])):
        errors.append(
            checks.Error(
                "ACCOUNT_SIGNUP_FIELDS must not ask for a password: sign-in is by emailed link.",
                id="accounts.E002",
            )
        )
    auth = settings.REST_FRAMEWORK.get("DEFAULT_AUTHENTICATION_CLASSES", [])
    if not auth or auth[0] != "accounts.authentication.BearerTokenAuthentication":
        errors.append(
            checks.Error(
                "accounts.authentication.BearerTokenAuthentication must come first in "
                "REST_FRAMEWORK['DEFAULT_AUTHENTICATION_CLASSES'] (it makes 401 the answer "
                "to missing credentials).",
                id="accounts.E003",
            )
        )
    for name in (
        "WR_MAGIC_LINK_MAX_AGE_SECONDS",
        "WR_VISITOR_MAX_AGE_DAYS",
        "WR_TOKEN_LAST_USED_EVERY_SECONDS",
        "WR_LAST_SEEN_EVERY_SECONDS",
    ):
        if getattr(settings, name) <= 0:
            errors.append(checks.Error(f"{name} must be positive.", id="accounts.E004"))
    if not settings.DEBUG and not settings.SITE_ROOT.startswith("https://"):
        errors.append(
            checks.Warning(
                "SITE_ROOT is not https: sign-in links would travel in clear text.",
                id="accounts.W001",
            )
        )
    return errors
