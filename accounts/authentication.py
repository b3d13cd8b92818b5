from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from accounts.models import ApiToken, User
from accounts.services import api_token_authenticate


class BearerTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer wr_…` with a personal API token (accounts.ApiToken).

    First in DEFAULT_AUTHENTICATION_CLASSES: DRF asks the first class for a WWW-Authenticate
    header, and having one is what turns "no credentials" into 401 rather than 403.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: expected 'Bearer <token>'."
            )
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.") from None
        api_token = api_token_authenticate(token=token)
        if api_token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        return api_token.user, api_token

    def authenticate_header(self, request: Any) -> str:
        return f'{self.keyword} realm="api"'
