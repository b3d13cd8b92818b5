"""Helpers for the account tests: find sign-in links in the test outbox."""

from __future__ import annotations

import re

from django.core import mail
from rest_framework.test import APIClient

LINK = re.compile(r"https?://[^\s\"<>]+/accounts/login/link/(?P<token>[A-Za-z0-9_\-]+)/")


def sent_links(to: str | None = None) -> list[str]:
    """The sign-in link URLs in the outbox (sent to `to` when given), oldest first."""
    links = []
    for message in mail.outbox:
        if to is None or [a.lower() for a in message.to] == [to.lower()]:
            match = LINK.search(str(message.body))
            assert match, message.body
            links.append(match.group(0))
    return links


def link_token(url: str) -> str:
    match = LINK.search(url)
    assert match, url
    return match["token"]


def link_path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def ask_for_link(client: APIClient, email: str) -> str:
    """Ask for a link over the API and return its token."""
    before = len(mail.outbox)
    response = client.post("/api/auth/magic-link/", {"email": email}, format="json")
    assert response.status_code == 202, response.content
    assert len(mail.outbox) == before + 1
    return link_token(sent_links()[-1])


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client
