"""The whole journey over HTTP: a visitor makes a hook, signs in by emailed link, keeps it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from django.test import Client

from accounts.models import User
from hooks.models import Hook
from hooks.services import hook_create
from tests.accounts.helpers import link_path, sent_links

pytestmark = pytest.mark.usefixtures("mail_after_commit")  # they read the outbox

CSRF = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


def csrf_token(page: Any) -> str:
    match = CSRF.search(page.content)
    assert match, page.content
    return match.group(1).decode()


def test_it_keeps_a_visitors_hook_through_sign_in(db: Any) -> None:
    # A real browser: CSRF is checked like in production.
    browser = Client(enforce_csrf_checks=True)

    # 1. The first visit starts a visitor.
    assert browser.get("/accounts/visitor/").status_code == 302
    me = browser.get("/api/me/").json()
    assert me["kind"] == "visitor"
    visitor = User.objects.get(pk=me["id"])

    # 2. The visitor makes a hook.
    hook = hook_create(owner=visitor, name="my first hook")

    # 3. Asks for a link.
    login_page = browser.get("/accounts/login/")
    assert (
        b"The hooks you made as a visitor will move to your account when you open the link "
        b"in this browser." in login_page.content
    )
    asked = browser.post(
        "/accounts/login/",
        {"email": "erin@example.com", "csrfmiddlewaretoken": csrf_token(login_page)},
        follow=True,
    )
    assert b"Check your email" in asked.content
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["erin@example.com"]

    # 4. Opens it: a page with a button, nothing spent yet.
    (url,) = sent_links("erin@example.com")
    confirm_page = browser.get(link_path(url))
    assert confirm_page.status_code == 200
    assert b"Sign in as erin@example.com" in confirm_page.content
    assert b"You asked for this link from this browser" in confirm_page.content
    assert Hook.objects.get(pk=hook.pk).owner == visitor

    # 5. Confirms.
    done = browser.post(link_path(url), {"csrfmiddlewaretoken": csrf_token(confirm_page)})
    assert done.status_code == 302

    # 6. The hook is in the account; the visitor is gone.
    me = browser.get("/api/me/").json()
    assert me["kind"] == "user"
    assert me["email"] == "erin@example.com"
    account = User.objects.get(pk=me["id"])
    assert list(Hook.objects.filter(owner=account)) == [hook]
    assert not User.objects.filter(pk=visitor.pk).exists()

    # 7. The link is spent.
    again = browser.get(link_path(url))
    assert again.status_code == 400
    assert b"already been used" in again.content
