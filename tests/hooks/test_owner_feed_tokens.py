"""The owners' live feed with an API token (contract item 8, for `wr logs --follow`): a token
needs no Origin; without one the browser's cookie still needs this site's Origin."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.services import api_token_create, api_token_revoke
from tests.hooks.realtime_helpers import hubs_gone, live_slots_clean  # noqa: F401 (fixtures)
from tests.hooks.test_realtime import COUNTER, _session_cookie, closed_with, connect, run, write

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_slots_clean")]


def _bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


def test_it_streams_the_owners_feed_to_an_api_token_without_an_origin(
    make_hook, alice, eager_tasks
) -> None:
    hook = make_hook(COUNTER)
    _, token = api_token_create(user=alice, name="cli")

    async def scenario() -> None:
        feed = await connect(f"/ws/hooks/{hook.pk}/", headers=_bearer(token))
        assert await feed.receive_json_from(timeout=10) == {"type": "hello", "hook": str(hook.pk)}
        assert await write(hook, {"n": 1}) == 202
        seen: dict[str, Any] = {}
        while "requests" not in seen:
            message = await feed.receive_json_from(timeout=10)
            seen[message["type"]] = message
        assert seen["requests"]["requests"][0]["method"] == "POST"
        await feed.disconnect()

    run(scenario)


def test_it_refuses_the_feed_to_another_users_revoked_or_forged_token(
    make_hook, alice, bob
) -> None:
    hook = make_hook(COUNTER)
    _, bobs = api_token_create(user=bob, name="bob")
    revoked_token, revoked = api_token_create(user=alice, name="old")
    api_token_revoke(api_token=revoked_token)

    async def scenario() -> None:
        assert (
            await closed_with(await connect(f"/ws/hooks/{hook.pk}/", headers=_bearer(bobs))) == 4404
        )
        for token in (revoked, "wr_forged", ""):
            feed = await connect(f"/ws/hooks/{hook.pk}/", headers=_bearer(token))
            assert await closed_with(feed) == 4403

    run(scenario)


def test_it_never_falls_back_to_the_cookie_when_a_bearer_token_is_invalid(make_hook, alice) -> None:
    # A cookie from another site's page plus a junk Authorization header must not get the
    # feed without the Origin check.
    hook = make_hook(COUNTER)
    cookie = [h for h in _session_cookie(alice) if h[0] == b"cookie"]

    async def scenario() -> None:
        feed = await connect(f"/ws/hooks/{hook.pk}/", headers=[*cookie, *_bearer("wr_junk")])
        assert await closed_with(feed) == 4403

    run(scenario)


def test_it_still_refuses_a_cookie_from_another_sites_page(make_hook, alice, settings) -> None:
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator

    from accounts.websocket import OwnerSocketAuth
    from hooks.routing import owner_websocket_urlpatterns

    # The Origin check reads ALLOWED_HOSTS when the application is built (production's list).
    settings.ALLOWED_HOSTS = ["testserver"]
    application = OwnerSocketAuth(URLRouter(owner_websocket_urlpatterns))
    hook = make_hook(COUNTER)
    cookie = [h for h in _session_cookie(alice) if h[0] == b"cookie"]

    async def scenario() -> None:
        for origin, allowed in (
            ([(b"origin", b"https://evil.example")], False),
            ([], False),
            ([(b"origin", b"http://testserver")], True),
        ):
            communicator = WebsocketCommunicator(
                application, f"/hooks/{hook.pk}/", headers=[*cookie, *origin]
            )
            connected, _ = await communicator.connect(timeout=10)
            if allowed:
                assert (await communicator.receive_json_from(timeout=10))["type"] == "hello"
            else:
                assert not connected
            await communicator.disconnect()

    run(scenario)
