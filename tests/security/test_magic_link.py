"""Sign-in links: the takeover of issue 13 (finding 2), performed for real, and login CSRF.

The attack: an attacker's visitor token asks for a sign-in link to alice's address; alice
receives the genuine email and confirms it in her own browser; on main the attacker's token then
answered /api/me/ as alice and listed her hooks. Here every variant of that script runs against
the real views (Django's test client with CSRF enforced, and once in real Chromium against
uvicorn), and each test fails if the attacker gains anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.core import mail
from django.test import Client
from playwright.sync_api import expect
from rest_framework.test import APIClient

from accounts import ratelimit
from accounts.models import ApiToken, MagicLink, User
from hooks.models import Hook
from hooks.services import hook_create
from tests.accounts.helpers import bearer, link_path, sent_links
from tests.browser.conftest import (  # noqa: F401  (fixtures: the real stack and Chromium)
    Stack,
    browser,
    console,
    new_page,
    stack,
)
from tests.servers import wait_for

pytestmark = pytest.mark.usefixtures("mail_after_commit")  # they read the outbox


CSRF_INPUT = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')
ATTACKER_AGENT = "curl/8.5.0"


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    ratelimit.reset()
    yield
    ratelimit.reset()


class Attacker:
    """A visitor that exists only as an API token, with a hook of its own."""

    def __init__(self) -> None:
        response = APIClient().post("/api/visitors/", HTTP_USER_AGENT=ATTACKER_AGENT)
        assert response.status_code == 201, response.content
        self.token = response.json()["token"]
        self.visitor = User.objects.get(pk=response.json()["user"]["id"])
        self.api = bearer(self.token)
        created = self.api.post("/api/hooks/", {"name": "attacker's hook"}, format="json")
        assert created.status_code == 201, created.content
        self.hook = Hook.objects.get(pk=created.json()["id"])

    def ask_for_link(self, email: str) -> str:
        """Ask for a sign-in link to `email`; the link goes to that mailbox, not to us."""
        before = len(mail.outbox)
        response = self.api.post(
            "/api/auth/magic-link/",
            {"email": email},
            format="json",
            HTTP_USER_AGENT=ATTACKER_AGENT,
        )
        assert response.status_code == 202, response.content
        assert len(mail.outbox) == before + 1
        return sent_links(email)[-1]

    def assert_gained_nothing_of(self, victim: User, victim_hooks: set[Hook]) -> None:
        me = self.api.get("/api/me/")
        assert me.status_code == 200, me.content
        assert me.json() == {"kind": "visitor", "id": self.visitor.pk, "email": None}
        listed = {row["id"] for row in self.api.get("/api/hooks/").json()["results"]}
        assert listed == {str(self.hook.pk)}
        for hook in victim_hooks:
            assert self.api.get(f"/api/hooks/{hook.pk}/").status_code == 404
        # Nothing of the attacker's moved into the victim's account either.
        self.hook.refresh_from_db()
        assert self.hook.owner_id == self.visitor.pk
        assert set(Hook.objects.filter(owner=victim)) == victim_hooks
        assert not ApiToken.objects.filter(user=victim).exists()
        assert ApiToken.objects.get(user=self.visitor).revoked_at is None


def csrf_from(page: Any) -> str:
    match = CSRF_INPUT.search(page.content)
    assert match, page.content
    return match.group(1).decode()


def alices_browser(alice: User, state: str) -> tuple[Client, set[Hook]]:
    """Alice's own browser (CSRF enforced, as in production) and the hooks she can see in it."""
    client = Client(enforce_csrf_checks=True)
    if state == "signed in":
        client.force_login(alice, backend="django.contrib.auth.backends.ModelBackend")
    elif state == "her visitor":
        own_visitor = User.objects.create_user(username="visitor-alice", is_visitor=True)
        hook_create(owner=own_visitor, name="alice's visitor hook")
        client.force_login(own_visitor, backend="django.contrib.auth.backends.ModelBackend")
    return client, set(Hook.objects.filter(owner=alice))


@pytest.mark.parametrize("state", ["not signed in", "her visitor", "signed in"])
def test_it_does_not_give_alice_to_the_token_that_asked_for_her_link(
    alice: User, state: str
) -> None:
    hook_create(owner=alice, name="alice's hook")
    attacker = Attacker()
    url = attacker.ask_for_link(alice.email)
    client, alices_hooks = alices_browser(alice, state)

    page = client.get(link_path(url))
    assert page.status_code == 200
    done = client.post(link_path(url), {"csrfmiddlewaretoken": csrf_from(page)})

    assert done.status_code == 302
    assert client.get("/api/me/").json()["id"] == alice.pk
    attacker.assert_gained_nothing_of(alice, alices_hooks)
    listed = {row["name"] for row in client.get("/api/hooks/").json()["results"]}
    assert "attacker's hook" not in listed


def test_it_does_not_give_alice_to_the_token_when_she_confirms_through_the_api(
    alice: User,
) -> None:
    hook_create(owner=alice, name="alice's hook")
    attacker = Attacker()
    token = attacker.ask_for_link(alice.email).rstrip("/").rsplit("/", 1)[-1]
    client = APIClient(enforce_csrf_checks=True)
    client.get("/accounts/login/")  # a page of ours sets the CSRF cookie

    response = client.post(
        "/api/auth/magic-link/confirm/",
        {"token": token},
        format="json",
        HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value,
    )

    assert response.status_code == 200, response.content
    assert response.json()["user"]["id"] == alice.pk
    assert response.json()["session"] is True
    assert client.get("/api/me/").json()["id"] == alice.pk
    attacker.assert_gained_nothing_of(alice, set(Hook.objects.filter(owner=alice)))


def test_it_merges_nothing_of_the_asking_token_even_when_asked_to(alice: User) -> None:
    # merge_visitor moves the *confirming* caller's visitor; the asker is never the one moved.
    attacker = Attacker()
    token = attacker.ask_for_link(alice.email).rstrip("/").rsplit("/", 1)[-1]

    response = APIClient().post(
        "/api/auth/magic-link/confirm/", {"token": token, "merge_visitor": True}, format="json"
    )

    assert response.status_code == 200
    attacker.assert_gained_nothing_of(alice, set())


def test_it_tells_alice_which_browser_asked_for_the_link(alice: User) -> None:
    attacker = Attacker()
    url = attacker.ask_for_link(alice.email)

    page = Client().get(link_path(url)).content.decode()
    (message,) = mail.outbox
    html, _ = message.alternatives[0]  # type: ignore[attr-defined]

    link = MagicLink.objects.get()
    assert link.requested_ip == "127.0.0.1"
    assert link.requested_browser == "curl 8"
    when = f"{link.created_at:%-d %B %Y, %H:%M} UTC"
    for text in [page, str(message.body), str(html)]:
        squashed = " ".join(text.split())
        assert f"asked for on {when} from 127.0.0.1, using curl 8" in squashed
        assert (
            "If this wasn't you, you can still sign in safely: nothing of the requester's "
            "comes with it." in squashed.replace("&#x27;", "'")
        )


def test_it_never_writes_the_requesters_user_agent_into_the_email(alice: User) -> None:
    lure = "Mozilla/5.0 (URGENT: your account is locked, call +1 555 0100 or visit evil.example)"
    APIClient().post(
        "/api/auth/magic-link/", {"email": alice.email}, format="json", HTTP_USER_AGENT=lure
    )

    (message,) = mail.outbox
    html, _ = message.alternatives[0]  # type: ignore[attr-defined]
    for text in [str(message.body), str(html)]:
        assert "evil.example" not in text
        assert "URGENT" not in text
    assert MagicLink.objects.get().requested_browser == "an unrecognised browser or program"


def test_it_leaves_a_victims_hooks_alone_when_they_open_the_attackers_own_link(
    visitor: User,
) -> None:
    # The reverse: the attacker asks for a link to their OWN address and gets a victim to open
    # it. The victim would be signed in as the attacker's email (the page says so in its title),
    # but the victim's visitor hooks must not move into the attacker's account unasked.
    victims_hook = hook_create(owner=visitor, name="victim's hook")
    attacker = Attacker()
    url = attacker.ask_for_link("attacker@evil.example")
    victim = Client(enforce_csrf_checks=True)
    victim.force_login(visitor, backend="django.contrib.auth.backends.ModelBackend")

    page = victim.get(link_path(url))
    assert b"Sign in as attacker@evil.example" in page.content
    assert b"not from this browser" in page.content
    assert b"checked" not in page.content
    victim.post(link_path(url), {"csrfmiddlewaretoken": csrf_from(page)})

    victims_hook.refresh_from_db()
    assert victims_hook.owner == visitor
    account = User.objects.get(email="attacker@evil.example")
    assert not Hook.objects.filter(owner=account).exists()


def test_it_refuses_a_confirmation_posted_by_another_site(visitor: User) -> None:
    # Login CSRF on the page: a form on evil.example posting the attacker's own link from the
    # victim's browser carries no CSRF token.
    attacker = Attacker()
    url = attacker.ask_for_link("attacker@evil.example")
    victim = Client(enforce_csrf_checks=True)
    victim.force_login(visitor, backend="django.contrib.auth.backends.ModelBackend")

    response = victim.post(link_path(url), HTTP_ORIGIN="https://evil.example")

    assert response.status_code == 403
    assert victim.get("/api/me/").json()["id"] == visitor.pk
    assert MagicLink.objects.get().used_at is None


def test_it_never_logs_a_session_in_from_an_api_confirmation_without_csrf(visitor: User) -> None:
    # The same through the API, which takes form bodies too: the victim's Lax session cookie is
    # not sent with another site's POST, so the request looks anonymous to DRF and was never
    # CSRF-checked; the answer's session cookie then signed the victim's browser in as the
    # attacker. Now the link is spent (it is the attacker's) but no session is logged in.
    attacker = Attacker()
    url = attacker.ask_for_link("attacker@evil.example")
    token = url.rstrip("/").rsplit("/", 1)[-1]
    victim = Client(enforce_csrf_checks=True)

    response = victim.post(
        "/api/auth/magic-link/confirm/", {"token": token}, HTTP_ORIGIN="https://evil.example"
    )

    assert response.status_code == 200, response.content
    assert response.json()["session"] is False
    assert "sessionid" not in response.cookies
    assert victim.get("/api/me/").status_code == 401
    # With the victim's session cookie (a same-site page), DRF's own CSRF check refuses.
    victim.force_login(visitor, backend="django.contrib.auth.backends.ModelBackend")
    second = attacker.ask_for_link("attacker@evil.example").rstrip("/").rsplit("/", 1)[-1]
    refused = victim.post("/api/auth/magic-link/confirm/", {"token": second})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert victim.get("/api/me/").json()["id"] == visitor.pk


# --- The same in real Chromium, against uvicorn ------------------------------------------


class HttpAttacker:
    """The attacker of the browser tests: plain HTTP against the running stack."""

    def __init__(self, target: Stack) -> None:
        self.stack = target
        answer = httpx.post(target.url + "/api/visitors/")
        assert answer.status_code == 201, answer.text
        self.token = answer.json()["token"]
        self.visitor_id = answer.json()["user"]["id"]
        self.headers = {"Authorization": f"Bearer {self.token}"}
        created = self.get_or_post("post", "/api/hooks/", {"name": "attacker's hook"})
        self.hook_id = created.json()["id"]

    def get_or_post(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return httpx.request(
            method, self.stack.url + path, json=body, headers=self.headers, timeout=10
        )

    def ask_for_link(self, email: str) -> str:
        """The new link the stack mailed to `email` (its mailbox stands for the owner's)."""
        pattern = re.compile(re.escape(self.stack.url) + r"/accounts/login/link/[^/\s]+/")
        before = set(pattern.findall("".join(self.stack.emails())))
        answer = self.get_or_post("post", "/api/auth/magic-link/", {"email": email})
        assert answer.status_code == 202, answer.text

        def new_links() -> set[str]:
            return set(pattern.findall("".join(self.stack.emails()))) - before

        # The stack's worker sends it once the request has committed (accounts.tasks).
        wait_for(lambda: bool(new_links()), 30, f"a new sign-in email to {email}")
        (new,) = new_links()
        return str(new)


def browser_json(page: Any, url: str) -> Any:
    answer = page.request.get(url)
    return answer.status, (answer.json() if answer.ok else None)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_it_does_not_give_alice_to_the_asking_token_in_a_real_browser(
    new_page: Any,  # noqa: F811
    stack: Stack,  # noqa: F811
) -> None:
    alice = User.objects.create_user(username="alice-b", email="alice-b@example.com")
    alices_hook = hook_create(owner=alice, name="alice's hook")
    attacker = HttpAttacker(stack)
    url = attacker.ask_for_link(alice.email)

    # Alice, in her own browser where she is a visitor with the example hook, opens the email.
    page = new_page()
    page.goto(stack.url + "/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Counter example")
    page.goto(url)
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in as alice-b@example.com")
    requester = page.locator("#link-requester")
    expect(requester).to_contain_text("from 127.0.0.1, using Python httpx")
    expect(requester).to_contain_text("not from this browser")
    expect(requester).to_contain_text("nothing of the requester's comes with it")
    expect(page.get_by_label(re.compile("Also move the 1 hook"))).not_to_be_checked()
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".nav-email")).to_have_text(alice.email)

    status, me = browser_json(page, stack.url + "/api/me/")
    assert (status, me["id"]) == (200, alice.pk)
    # The attacker's token is still the attacker's visitor, and sees none of alice's hooks.
    me = attacker.get_or_post("get", "/api/me/")
    assert me.json() == {"kind": "visitor", "id": attacker.visitor_id, "email": None}
    listed = {row["id"] for row in attacker.get_or_post("get", "/api/hooks/").json()["results"]}
    assert listed == {attacker.hook_id}
    assert attacker.get_or_post("get", f"/api/hooks/{alices_hook.pk}/").status_code == 404
    # Alice gained neither the attacker's hook nor its token, and kept her browser's example
    # hook out of it too (she did not tick the box).
    assert set(Hook.objects.filter(owner=alice)) == {alices_hook}
    assert not ApiToken.objects.filter(user=alice).exists()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_it_resists_login_csrf_from_another_site_in_a_real_browser(
    browser: Any,  # noqa: F811
    stack: Stack,  # noqa: F811
) -> None:
    attacker = HttpAttacker(stack)
    links = [attacker.ask_for_link("mallory@evil.example") for _ in range(2)]
    api_token = links[0].rstrip("/").rsplit("/", 1)[-1]
    # Another site's page that posts the attacker's links from the victim's browser.
    evil_pages = {
        "http://evil.test/api": (
            f'<form method="post" action="{stack.url}/api/auth/magic-link/confirm/">'
            f'<input name="token" value="{api_token}"></form>'
        ),
        "http://evil.test/page": f'<form method="post" action="{links[1]}"></form>',
    }
    context = browser.new_context()
    try:
        context.route(
            "http://evil.test/**",
            lambda route: route.fulfill(
                content_type="text/html",
                body=evil_pages[route.request.url] + "<script>document.forms[0].submit()</script>",
            ),
        )
        page = context.new_page()
        page.goto(stack.url + "/")
        expect(page.get_by_role("heading", level=1)).to_have_text("Counter example")
        status, victim = browser_json(page, stack.url + "/api/me/")
        assert victim["kind"] == "visitor"

        for evil in evil_pages:
            with page.expect_navigation(url=re.compile(re.escape(stack.url))):
                page.goto(evil)
            status, me = browser_json(page, stack.url + "/api/me/")
            assert (status, me) == (200, victim), evil
    finally:
        context.close()
    # The page's form was refused before it could spend its link.
    assert MagicLink.objects.filter(used_at__isnull=True).count() == 1
