from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.http import HttpRequest

from webreducer.clientip import client_ip


class AccountAdapter(DefaultAccountAdapter):
    """allauth's adapter for WebReducer: accounts are only made by the emailed-link sign-in.

    allauth's own password sign-up stays closed; accounts.services creates the account the
    first time someone confirms a link sent to their address.
    """

    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return False

    def get_client_ip(self, request: HttpRequest) -> str:
        # allauth's own rate limits count per address too: the same reading of X-Forwarded-For
        # as every other per-IP limit (webreducer.clientip), never a second one.
        return client_ip(request)
