"""`wr logs --follow` over the owners' live feed (WS /ws/hooks/<id>/ with the Bearer token),
against uvicorn and a Celery worker: the follower prints new requests without polling."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from django.conf import settings

from accounts.models import User
from hooks.services import hook_create
from tests.cli.helpers import SIGNED, Wr, follow, linked, post
from tests.servers import asgi_server, celery_worker, wait_for
from webreducer.redis import get_redis

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="a server and a worker need Redis"),
    pytest.mark.usefixtures("quiet_worker"),
]


@pytest.fixture(scope="module")
def base(django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("cli-feed")
    with django_db_blocker.unblock(), ExitStack() as stack:
        url = stack.enter_context(asgi_server(logs))
        stack.enter_context(celery_worker(logs, concurrency=1, name="cli-feed"))
        yield url


def test_it_follows_the_log_over_the_live_feed_with_the_token(
    wr: Wr, base: str, alice: User
) -> None:
    hook = hook_create(owner=alice, code=SIGNED)
    linked(wr.folder, hook)
    wr.ok("secrets", "set", "SIG", input="s3cret")
    follower = follow(wr)
    lines = follower.lines
    try:
        # Once the feed has said hello, the follower is subscribed; a write before that could
        # land between the baseline and the subscription, which the feed does not replay.
        wait_for(lambda: _subscribed(hook.pk), 30, "the follower to subscribe")
        assert post(base, hook, {}, **{"X-Signature": "s3cret"}).status_code == 201
        assert post(base, hook, {}, **{"X-Signature": "wrong"}).status_code == 401
        wait_for(lambda: any("rejected" in line for line in lines), 30, "the rejected write")
        wait_for(lambda: any("#1" in line for line in lines), 30, "the applied write")
    finally:
        stderr = follower.stop()
    assert "polling" not in stderr, stderr
    assert len([line for line in lines if "#1" in line and "applied" in line]) == 1
    assert len([line for line in lines if "rejected  401" in line]) == 1


def _subscribed(hook_id: Any) -> bool:
    # The feed's watch mark (hooks.broadcast.watch), read without the process's cache.
    client = get_redis()
    assert client is not None
    return bool(client.exists(f"wr:watch:{hook_id}"))
