"""Issue 13, finding 1 (the origins half): users' content is served on its own origin.

With WR_PUBLIC_ORIGIN's host apart from SITE_ROOT's, the app refuses its pages and API on the
public host and the public endpoints on the app host, so a hook's page can never be opened as
the app, and the app's host-only cookies never reach it. Every URL shown to people names the
right origin. (The browser attack itself is in test_user_content.py.)
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.core import mail
from django.core.management import call_command
from django.test import Client
from playwright.sync_api import expect
from rest_framework.test import APIClient

from accounts.models import User
from hooks.models import Hook, Request
from tests.conftest import read_key, write_key
from tests.servers import ROOT, asgi_server, free_port, wait_for
from webreducer.asgi import application

APP, PUBLIC = "https://wr.example.com", "https://hooks.example.net"


@pytest.fixture
def two_origins(settings: Any) -> None:
    settings.SITE_ROOT = APP
    settings.WR_PUBLIC_ORIGIN = PUBLIC
    settings.ALLOWED_HOSTS = ["wr.example.com", "hooks.example.net", "other.internal"]


def on(host: str, user: User | None = None) -> Client:
    client = Client(HTTP_HOST=host, headers={"X-Forwarded-Proto": "https"})
    if user is not None:
        client.force_login(user)
    return client


def wrong_origin(response: Any, names: str) -> None:
    assert response.status_code == 404, response.content[:300]
    error = response.json()["error"]
    assert error["code"] == "wrong_origin"
    assert names in error["message"]


@pytest.mark.usefixtures("two_origins")
@pytest.mark.parametrize(
    "path",
    ["/", "/hooks/", "/docs/", "/api/hooks/", "/api/tokens/", "/api/me/", "/admin/",
     "/accounts/login/", "/static/css/app.css", "/api/schema/"],
)  # fmt: skip
def test_it_refuses_the_app_on_the_public_host_even_to_a_signed_in_browser(
    alice: User, make_hook: Any, path: str
) -> None:
    make_hook("")

    response = on("hooks.example.net", alice).get(path)

    wrong_origin(response, APP)
    assert b"test hook" not in response.content
    # Whatever a hook's page there could fetch is sandboxed user content too.
    assert response["Content-Security-Policy"] == "sandbox"


@pytest.mark.usefixtures("two_origins", "eager_tasks")
def test_it_refuses_the_public_endpoints_on_the_app_host(make_hook: Any) -> None:
    hook = make_hook("")
    app = on("wr.example.com")

    for response in (
        app.post(f"/write/{write_key(hook)}", "{}", content_type="application/json"),
        app.get(f"/read/{read_key(hook)}"),
        app.get(f"/read/{read_key(hook)}/events"),
        # Another host the operator allows (a health check) is the app's too.
        on("other.internal").get(f"/read/{read_key(hook)}"),
    ):
        wrong_origin(response, PUBLIC)
        assert response["Content-Security-Policy"] == "sandbox"
        assert response["X-Content-Type-Options"] == "nosniff"
    assert not hook.requests.exists()


@pytest.mark.usefixtures("two_origins", "eager_tasks")
def test_it_serves_each_origin_its_own_routes(alice: User, make_hook: Any) -> None:
    hook = make_hook("")
    public = on("hooks.example.net")

    assert (
        public.post(f"/write/{write_key(hook)}", "{}", content_type="application/json").status_code
        == 202
    )
    assert public.get(f"/read/{read_key(hook)}").status_code == 200
    assert on("wr.example.com", alice).get("/api/hooks/").status_code == 200
    assert on("wr.example.com", alice).get(f"/hooks/{hook.pk}/").status_code == 200


@pytest.mark.usefixtures("two_origins")
def test_it_refuses_each_websocket_on_the_other_host(alice: User, make_hook: Any) -> None:
    hook = make_hook("")

    async def refused(path: str, host: str) -> bool:
        socket = WebsocketCommunicator(
            application, path, headers=[(b"host", host.encode()), (b"origin", APP.encode())]
        )
        connected, _ = await socket.connect(timeout=10)
        await socket.disconnect()
        return not connected

    assert async_to_sync(refused)(f"/read/{read_key(hook)}/live", "wr.example.com")
    assert async_to_sync(refused)(f"/ws/hooks/{hook.pk}/", "hooks.example.net")


@pytest.mark.usefixtures("two_origins")
def test_it_shows_the_public_origin_in_every_url_of_a_key(alice: User, make_hook: Any) -> None:
    hook: Hook = make_hook("")
    write, read = write_key(hook), read_key(hook)

    api = APIClient(HTTP_HOST="wr.example.com")
    api.force_authenticate(alice)
    keys = api.get(f"/api/hooks/{hook.pk}/").json()["keys"]
    page = on("wr.example.com", alice).get(f"/hooks/{hook.pk}/").content.decode()
    config = json.loads(re.search(r'id="hook-config"[^>]*>(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    docs = on("wr.example.com").get("/docs/").content.decode()
    out = io.StringIO()
    call_command("createhook", stdout=out)

    assert {k["url"] for k in keys} >= {f"{PUBLIC}/write/{write}", f"{PUBLIC}/read/{read}"}
    assert f'id="write-url" aria-labelledby="write-url-label">{PUBLIC}/write/{write}<' in page
    assert f"curl -X POST {PUBLIC}/write/{write}" in page
    assert f">{PUBLIC}/read/{read}<" in page
    assert f">wss://hooks.example.net/read/{read}/live<" in page
    assert config["writeUrl"] == f"{PUBLIC}/write/{write}"
    assert config["wsPath"] == f"/ws/hooks/{hook.pk}/"  # the owners' feed stays on the app
    assert f"{PUBLIC}/write/&lt;write key&gt;" in docs
    assert "wss://hooks.example.net/read/&lt;read key&gt;/live" in docs
    assert f"{APP}/write/" not in page + docs
    assert re.search(rf"^write {re.escape(PUBLIC)}/write/\S+$", out.getvalue(), re.M)
    assert re.search(rf"^read  {re.escape(PUBLIC)}/read/\S+$", out.getvalue(), re.M)


@pytest.mark.usefixtures("two_origins", "mail_after_commit")
def test_it_sends_sign_in_links_on_the_apps_origin() -> None:
    APIClient(HTTP_HOST="wr.example.com").post(
        "/api/auth/magic-link/", {"email": "carol@example.com"}, format="json"
    )

    (message,) = mail.outbox
    assert f"{APP}/accounts/login/link/" in str(message.body)
    assert PUBLIC not in str(message.body)


def test_it_sets_the_session_and_csrf_cookies_host_only_and_same_site(db: Any) -> None:
    response = Client().get("/", follow=True)

    cookies = response.client.cookies
    assert {"sessionid", "csrftoken"} <= set(cookies)
    for name in ("sessionid", "csrftoken"):
        assert cookies[name]["domain"] == "", f"{name} is sent to other hosts"
        assert cookies[name]["samesite"] == "Lax"
    assert cookies["sessionid"]["httponly"]


def settings_of(**env: str) -> dict[str, Any]:
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({n: getattr(s, n) for n in ['SESSION_COOKIE_SECURE', "
        "'CSRF_COOKIE_SECURE', 'ALLOWED_HOSTS', 'WR_PUBLIC_ORIGIN', 'SITE_ROOT']}))"
    )
    environ = {k: v for k, v in os.environ.items() if k not in ("SITE_ROOT", "WR_PUBLIC_ORIGIN")}
    environ.update(DJANGO_SETTINGS_MODULE="webreducer.settings", **env)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_it_marks_the_cookies_secure_when_the_app_is_https() -> None:
    assert settings_of(SITE_ROOT="https://wr.example.com")["SESSION_COOKIE_SECURE"] is True
    assert settings_of(SITE_ROOT="https://wr.example.com")["CSRF_COOKIE_SECURE"] is True
    assert settings_of(SITE_ROOT="http://localhost:8000")["SESSION_COOKIE_SECURE"] is False


def test_it_uses_one_origin_when_the_public_one_is_unset() -> None:
    got = settings_of(SITE_ROOT="http://localhost:9000", DEBUG="true")

    assert got["WR_PUBLIC_ORIGIN"] == ""
    assert sorted(got["ALLOWED_HOSTS"]) == ["127.0.0.1", "[::1]", "localhost"]


def test_it_refuses_an_origin_that_is_not_one(tmp_path: Path) -> None:
    code = "import django; django.setup()"
    environ = dict(os.environ, DJANGO_SETTINGS_MODULE="webreducer.settings")
    for value in ("hooks.example.net", "https://hooks.example.net/read/", "ftp://x"):
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**environ, "WR_PUBLIC_ORIGIN": value},
            capture_output=True,
            text=True,
        )
        assert done.returncode != 0 and "WR_PUBLIC_ORIGIN" in done.stderr, value


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[tuple[int, list[str]]]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "SITE_ROOT", "WR_PUBLIC_ORIGIN", "ALLOWED_HOSTS")
    }
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", PYTHONUNBUFFERED="1")
    port = free_port()
    log = tmp_path / "run.log"
    with log.open("w") as out:
        run = subprocess.Popen(
            [sys.executable, "manage.py", "runstack", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: _answers(port), timeout=60, what="make run to serve")
        yield port, log.read_text().splitlines()
    finally:
        os.killpg(run.pid, signal.SIGTERM)
        run.wait(timeout=30)


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/read/none", timeout=1)
        return True
    except httpx.TransportError:
        return False


def test_make_run_serves_two_origins_on_one_port(make_run: tuple[int, list[str]]) -> None:
    port, printed = make_run
    app, public = f"http://localhost:{port}", f"http://127.0.0.1:{port}"

    assert any(f"app:            {app}/" in line for line in printed), printed
    assert any(f"{public}/write/" in line for line in printed), printed
    on_public = httpx.get(f"{public}/docs/")
    on_app = httpx.get(f"{public}/read/none", headers={"Host": f"localhost:{port}"})
    served = httpx.get(f"{public}/docs/", headers={"Host": f"localhost:{port}"})
    assert on_public.status_code == 404 and on_public.json()["error"]["code"] == "wrong_origin"
    assert on_app.status_code == 404 and on_app.json()["error"]["code"] == "wrong_origin"
    assert served.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_the_ui_works_across_the_two_origins_in_chromium(browser: Any, tmp_path: Path) -> None:
    port = free_port()
    app, public = f"http://localhost:{port}", f"http://127.0.0.1:{port}"
    with asgi_server(tmp_path, port=port, SITE_ROOT=app, WR_PUBLIC_ORIGIN=public):
        context = browser.new_context()
        context.set_default_timeout(20_000)
        try:
            page = context.new_page()
            page.goto(app + "/")
            # The owners' feed opens from the app's origin; the page shows public URLs.
            expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")
            expect(page.locator("#write-url")).to_have_text(re.compile(rf"^{public}/write/\S+$"))
            form = page.locator("#test-request")
            form.get_by_label("Body").fill('{"number": 2}')
            form.get_by_role("button", name="Send").click()
            # The form's write goes to the public origin (CORS, no credentials) and is logged.
            expect(page.locator("#tr-status")).to_contain_text("Answered 2")
            expect(page.locator(".log-row").first).to_be_visible()
            cookies = {c["name"]: c["domain"] for c in context.cookies()}
        finally:
            context.close()

    assert cookies["sessionid"] == "localhost"  # host-only, never sent to 127.0.0.1
    assert not Request.objects.filter(headers__has_key="Cookie").exists()
