"""Issue 13, finding 6: a hook's code sets only the response headers on the allow-list, and
every public answer is sandboxed user content (finding 1's CSP and nosniff).

Each test sends a hostile header through the real path (the sandboxed responder or query, the
public view, the middleware) and fails if it reaches the client. docs/functions.md, "Response
headers", has the table.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from hooks.models import Request
from tests.conftest import read_key, write_key

pytestmark = pytest.mark.usefixtures("eager_tasks")

# Whatever headers the request asks for, the responder and the query set them.
ECHO = """
from webreducer import Response

def responder(request, secrets):
    return Response({"ok": True}, headers=request.body["headers"])

def query(state, params, secrets):
    return Response({"ok": True}, headers=json.loads(params["headers"]))

import json
"""

# Finding 6 as found, then the rest of what browsers, proxies and servers act on.
HOSTILE = {
    "Strict-Transport-Security": "max-age=0",
    "Clear-Site-Data": '"cookies", "storage"',
    "Content-Security-Policy": "default-src *; script-src 'unsafe-inline'",
    "Content-Security-Policy-Report-Only": "default-src 'none'; report-uri https://evil.test/",
    "Access-Control-Allow-Credentials": "true",
    "Access-Control-Allow-Origin": "https://evil.test",
    "Access-Control-Allow-Headers": "Authorization",
    "Refresh": "0; url=https://evil.test/",
    "Link": "<https://evil.test/x.css>; rel=stylesheet",
    "X-Frame-Options": "ALLOWALL",
    "X-Content-Type-Options": "sniff",
    "Referrer-Policy": "unsafe-url",
    "X-WebReducer-Seq": "999999",
    "Set-Cookie": "sessionid=attacker; Path=/",
    "Set-Cookie2": "sessionid=attacker",
    "Permissions-Policy": "camera=*",
    "Cross-Origin-Opener-Policy": "unsafe-none",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Cross-Origin-Embedder-Policy": "unsafe-none",
    "Origin-Agent-Cluster": "?0",
    "Alt-Svc": 'h2="evil.test:443"',
    "Server": "evil",
    "Content-Length": "1",
    "Transfer-Encoding": "chunked",
    "Connection": "close",
    "Keep-Alive": "timeout=1",
    "Upgrade": "websocket",
    "Trailer": "X-Late",
    "X-Accel-Redirect": "/internal/secret",
    "X-Accel-Buffering": "no",
    "X-Sendfile": "/etc/passwd",
    "X-Lighttpd-Send-File": "/etc/passwd",
    "X-LiteSpeed-Location": "/internal",
    "X-Forwarded-For": "10.0.0.1",
    "X-Real-IP": "10.0.0.1",
    "X-XSS-Protection": "1; report=https://evil.test/",
    "X-Permitted-Cross-Domain-Policies": "all",
    "X-Content-Security-Policy": "default-src *",
    "X-WebKit-CSP": "default-src *",
    "X-UA-Compatible": "IE=edge",
    "X-DNS-Prefetch-Control": "on",
    "X-Download-Options": "noopen",
    "NEL": '{"report_to": "evil", "max_age": 86400}',
    "Report-To": '{"group": "evil", "endpoints": [{"url": "https://evil.test/"}]}',
    "Reporting-Endpoints": 'evil="https://evil.test/"',
    "Service-Worker-Allowed": "/",
    "Timing-Allow-Origin": "*",
    "SourceMap": "https://evil.test/map",
    "Accept-CH": "Sec-CH-UA-Full-Version-List",
}

# What the server itself says in those headers, whatever the hook asked for.
SERVER_VALUES = {
    "Content-Security-Policy": "sandbox",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Access-Control-Allow-Origin": "*",
    "Cross-Origin-Opener-Policy": "same-origin",
}

ALLOWED = {
    "Cache-Control": "max-age=60",
    "ETag": '"v1"',
    "Last-Modified": "Wed, 21 Oct 2026 07:28:00 GMT",
    "Expires": "Wed, 21 Oct 2026 07:28:00 GMT",
    "Vary": "Accept",
    "Content-Disposition": 'attachment; filename="board.json"',
    "Content-Language": "en",
    "Retry-After": "5",
    "WWW-Authenticate": 'Basic realm="hook"',
    "X-Thing": "yes",
    "X-Robots-Tag": "noindex",
}


def write(client: Client, hook: Any, headers: dict[str, str]) -> Any:
    return client.post(
        f"/write/{write_key(hook)}",
        json.dumps({"headers": headers}),
        content_type="application/json",
    )


def read(client: Client, hook: Any, headers: dict[str, str]) -> Any:
    return client.get(f"/read/{read_key(hook)}", {"headers": json.dumps(headers)})


def assert_not_sent(response: Any, name: str, value: str) -> None:
    sent = response.headers.get(name)
    assert sent != value, f"{name}: {value} reached the client"
    if name in SERVER_VALUES:
        assert sent == SERVER_VALUES[name]
    # Set-Cookie is kept apart from the other headers by Django.
    assert not response.cookies, response.cookies


@pytest.mark.parametrize(("name", "value"), HOSTILE.items(), ids=list(HOSTILE))
def test_it_never_lets_a_responder_set(
    make_hook: Any, client: Client, name: str, value: str
) -> None:
    hook = make_hook(ECHO)

    response = write(client, hook, {name: value})

    assert response.status_code == 200
    assert_not_sent(response, name, value)
    assert "X-WebReducer-Seq" not in response.headers  # a write has no seq to tell
    logged = Request.objects.get(hook=hook)
    assert f"not sent: {name}" in logged.console, logged.console


@pytest.mark.parametrize(("name", "value"), HOSTILE.items(), ids=list(HOSTILE))
def test_it_never_lets_a_query_set(make_hook: Any, client: Client, name: str, value: str) -> None:
    hook = make_hook(ECHO)

    response = read(client, hook, {name: value})

    assert response.status_code == 200
    assert_not_sent(response, name, value)
    assert response["X-WebReducer-Seq"] == "0"  # the server's, never the hook's


def test_it_passes_the_documented_headers_through(make_hook: Any, client: Client) -> None:
    hook = make_hook(ECHO)

    for response in (write(client, hook, ALLOWED), read(client, hook, ALLOWED)):
        assert response.status_code == 200
        for name, value in ALLOWED.items():
            assert response[name] == value, name
    assert Request.objects.get(hook=hook).console == ""


def test_it_ignores_the_case_of_a_hostile_name(make_hook: Any, client: Client) -> None:
    hook = make_hook(ECHO)

    response = write(
        client, hook, {"sTrIcT-tRaNsPoRt-SeCuRiTy": "max-age=0", "x-ACCEL-redirect": "/x"}
    )

    assert "Strict-Transport-Security" not in response.headers
    assert "X-Accel-Redirect" not in response.headers


RAISING = """
def responder(request, secrets):
    raise ValueError("no")

def query(state, params, secrets):
    raise ValueError("no")
"""


def test_every_public_answer_is_sandboxed_errors_included(make_hook: Any, settings: Any) -> None:
    settings.WR_MAX_BODY_BYTES = 10
    hook = make_hook(RAISING)
    client = Client()
    write, read = f"/write/{write_key(hook)}", f"/read/{read_key(hook)}"

    answers = {
        "unknown key": client.get("/read/nope"),
        "unknown write key": client.post("/write/nope", "{}", content_type="application/json"),
        "no such route": client.get("/read/a/b/c"),
        "responder raised": client.post(write, "{}", content_type="application/json"),
        "query raised": client.get(read),
        "too large": client.post(write, "x" * 100, content_type="text/plain"),
        "invalid JSON": client.post(write, "{", content_type="application/json"),
        "preflight": client.options(write, headers={"Access-Control-Request-Method": "POST"}),
        "SSE on WSGI": client.get(f"{read}/events"),
        "SSE wrong method": client.post(f"{read}/events"),
    }

    for what, response in answers.items():
        assert response["Content-Security-Policy"] == "sandbox", what
        assert response["X-Content-Type-Options"] == "nosniff", what
        assert response.status_code >= 200, what
