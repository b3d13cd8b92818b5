"""The write path's shortcuts keep its guarantees (issue 18; docs/performance.md, "Write path").

A web process answers writes from a key row it read up to two seconds ago (hooks/writes.py),
and the public URLs cross a shorter middleware chain (webreducer/handlers.py). Changes below are
made with queryset updates, as another process's would be: no signal reaches this process's
copy of the key row, only the INSERT's own check does.
"""

from __future__ import annotations

import io
import json
import sys
import time
import uuid
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.utils import timezone

from hooks import ratelimit, writes
from hooks.models import Hook, Key, Request, State, Version
from hooks.services import secret_set
from tests.conftest import read_key, write_key
from tests.hooks.api import write

pytestmark = pytest.mark.usefixtures("eager_tasks")

ANSWERING = """
def responder(request, secrets):
    return {"version": %d, "secret": secrets.get("WHO")}
"""


def cached_write(client: Client, token: str) -> Any:
    """A write that leaves this process holding the key's row."""
    response = write(client, token, {"n": 1})
    assert token in writes._keys
    return response


def test_it_stores_nothing_for_a_key_paused_elsewhere_while_its_row_is_cached(
    make_hook: Any, client: Client
) -> None:
    hook = make_hook("")
    token = write_key(hook)
    cached_write(client, token)

    Key.objects.filter(token=token).update(is_paused=True)
    response = write(client, token, {"n": 2})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert Request.objects.count() == 1


def test_it_stores_nothing_for_a_key_revoked_elsewhere_while_its_row_is_cached(
    make_hook: Any, client: Client
) -> None:
    hook = make_hook("")
    token = write_key(hook)
    cached_write(client, token)

    Key.objects.filter(token=token).update(revoked_at=timezone.now())

    assert write(client, token, {"n": 2}).status_code == 404
    assert Request.objects.count() == 1


def test_it_stores_nothing_for_a_hook_paused_elsewhere_while_its_key_is_cached(
    make_hook: Any, client: Client
) -> None:
    hook = make_hook("")
    token = write_key(hook)
    cached_write(client, token)

    Hook.objects.filter(pk=hook.pk).update(is_paused=True)

    assert write(client, token, {"n": 2}).status_code == 404
    assert Request.objects.count() == 1


def test_it_answers_with_the_version_published_elsewhere_since_the_row_was_cached(
    make_hook: Any, client: Client
) -> None:
    hook = make_hook(ANSWERING % 1)
    token = write_key(hook)
    assert cached_write(client, token).json()["version"] == 1

    second = Version.objects.create(
        hook=hook,
        number=2,
        code=ANSWERING % 2,
        functions=["responder"],
        status=Version.Status.PUBLISHED,
        published_at=timezone.now(),
    )
    State.objects.create(version=second, hook=hook)
    Hook.objects.filter(pk=hook.pk).update(live_version=second)
    response = write(client, token, {"n": 2})

    assert response.json()["version"] == 2
    stored = Request.objects.order_by("id").last()
    assert stored is not None
    assert stored.routed_by == second.pk
    assert Request.objects.count() == 2


def test_it_answers_with_the_secrets_set_since_the_row_was_cached(
    make_hook: Any, client: Client
) -> None:
    hook = make_hook(ANSWERING % 1)
    token = write_key(hook)
    assert cached_write(client, token).json()["secret"] is None

    stale = writes._keys[token]
    secret_set(hook=hook, name="WHO", value="alice")
    writes._keys[token] = stale  # as another process still holds it

    assert write(client, token, {"n": 2}).json()["secret"] == "alice"


def test_it_applies_limits_saved_in_this_process_to_the_next_write(
    make_hook: Any, client: Client
) -> None:
    hook = make_hook("")
    token = write_key(hook)
    cached_write(client, token)

    hook.limits = {"max_body_bytes": 8}
    hook.save()
    response = write(client, token, {"long": "x" * 100})

    assert response.status_code == 413
    assert Request.objects.count() == 1


@pytest.mark.django_db
def test_it_refuses_a_write_of_an_unknown_key_every_time(client: Client) -> None:
    for _ in range(2):
        assert write(client, "no-such-key", {"n": 1}).status_code == 404
    assert "no-such-key" not in writes._keys


def wsgi_call(method: str, path: str, body: bytes = b"", **headers: str) -> tuple[str, dict, bytes]:
    """One request through webreducer.wsgi.application, as gunicorn calls it."""
    from webreducer.wsgi import application

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "localhost:8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        **{f"HTTP_{name.upper()}": value for name, value in headers.items()},
    }
    if "HTTP_CONTENT_TYPE" in environ:
        environ["CONTENT_TYPE"] = environ.pop("HTTP_CONTENT_TYPE")
    answer: list[Any] = []
    chunks = application(environ, lambda status, head, exc=None: answer.extend([status, head]))
    content = b"".join(chunks)
    return answer[0], dict(answer[1]), content


@pytest.mark.django_db(transaction=True)
def test_it_serves_the_public_urls_with_the_headers_of_the_full_chain(
    make_hook: Any, client: Client
) -> None:
    hook = make_hook("")
    body = json.dumps({"n": 1}).encode()

    status, headers, content = wsgi_call(
        "POST", f"/write/{write_key(hook)}", body, content_type="application/json"
    )
    full = client.post(f"/write/{write_key(hook)}", body, content_type="application/json")

    assert status.startswith("202")
    assert json.loads(content)["id"]
    assert headers["Content-Length"] == str(len(content))
    for name in (
        "Content-Security-Policy",
        "X-Content-Type-Options",
        "X-Frame-Options",
        "Referrer-Policy",
        "Cross-Origin-Opener-Policy",
        "Access-Control-Allow-Origin",
    ):
        assert headers[name] == full[name], name
    assert Request.objects.filter(hook=hook).count() == 2
    status, headers, content = wsgi_call("GET", f"/read/{read_key(hook)}")
    assert status.startswith("200")
    assert headers["Content-Security-Policy"] == "sandbox"


@pytest.mark.django_db(transaction=True)
def test_it_keeps_the_origin_guard_on_the_public_chain(make_hook: Any, settings: Any) -> None:
    settings.SITE_ROOT = "http://app.localhost:8000"
    settings.WR_PUBLIC_ORIGIN = "http://hooks.localhost:8000"
    settings.ALLOWED_HOSTS = ["*"]
    hook = make_hook("")

    status, _, content = wsgi_call(
        "POST", f"/write/{write_key(hook)}", b"{}", host="app.localhost:8000"
    )

    assert status.startswith("404")
    assert json.loads(content)["error"]["code"] == "wrong_origin"
    assert not Request.objects.filter(hook=hook).exists()


def test_it_answers_a_read_with_another_method_with_a_json_405(
    make_hook: Any, client: Client
) -> None:
    hook = make_hook("")

    response = client.post(f"/read/{read_key(hook)}", "{}", content_type="application/json")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response["Allow"] == "GET, HEAD, OPTIONS"


def test_it_refuses_a_public_middleware_the_chain_would_not_run(settings: Any) -> None:
    from webreducer.handlers import PublicWSGIHandler

    # CSRF's check is a process_view: on the public chain it would silently never run.
    settings.WR_PUBLIC_MIDDLEWARE = [
        *settings.WR_PUBLIC_MIDDLEWARE,
        "django.middleware.csrf.CsrfViewMiddleware",
    ]

    with pytest.raises(ImproperlyConfigured, match="CsrfViewMiddleware"):
        PublicWSGIHandler()


@pytest.mark.parametrize("processes", [1, 3])
def test_it_never_admits_more_writes_than_the_shared_bucket_holds_with_leases(
    processes: int,
) -> None:
    """A key allowed 640 writes/s with a burst of 64: each process takes 16 tokens at a time.
    Other processes are played by forgetting this one's lease, as a new process starts."""
    rate, burst = 640.0, 64
    assert ratelimit.lease_size(rate=rate, burst=burst) == 16
    bucket = f"test-lease-{uuid.uuid4()}"
    started = time.monotonic()
    admitted = 0
    for n in range(300):
        if n % processes:
            ratelimit._leases.clear()
        admitted += ratelimit.take(bucket, rate=rate, burst=burst) == 0
    elapsed = time.monotonic() - started

    # Never more than the burst and what flowed in meanwhile.
    assert admitted <= burst + rate * elapsed + 1
    if processes == 1:
        assert admitted >= burst


def test_it_gives_unused_leased_tokens_back_with_the_next_call() -> None:
    from webreducer.redis import get_redis

    client = get_redis()
    assert client is not None
    bucket, rate, burst = f"test-lease-{uuid.uuid4()}", 640.0, 64
    assert ratelimit.take(bucket, rate=rate, burst=burst) == 0  # holds 15 more
    held, _ = ratelimit._leases[bucket]
    ratelimit._leases[bucket] = (held, 0.0)  # its time is up

    assert ratelimit.take(bucket, rate=rate, burst=burst) == 0  # 15 back, 16 taken
    tokens = float(client.hget(f"wr:rate:{bucket}", "tokens") or 0)
    assert burst - 17 - 1 < tokens <= burst - 17 + 1


def test_it_takes_one_token_per_write_for_a_key_limited_to_20_per_second() -> None:
    assert ratelimit.lease_size(rate=20, burst=1000) == 1
    assert ratelimit.lease_size(rate=1000, burst=4) == 1
