"""A public URL's key is its credential: it must not reach the servers' logs (a request line in
the access log, Django's "Internal Server Error: /write/<key>"). Attacked on real servers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import read_key, write_key
from tests.servers import asgi_process, wsgi_server
from webreducer.log_redaction import redact

pytestmark = pytest.mark.django_db(transaction=True)

FAILING = "def responder(request, secrets):\n    raise RuntimeError('boom')\n"


def test_redact_keeps_four_characters_of_a_key_and_nothing_else() -> None:
    key = "Qm9vdGhlcmUtaXMtbm8ta2V5LWhlcmUtYXQtYWxsLWhh"
    assert redact(f"GET /write/{key}/github?x=1") == "GET /write/Qm9v…/github?x=1"
    assert redact(f"/read/{key}/live") == "/read/Qm9v…/live"
    assert redact("/write/short") == "/write/short"
    assert redact(f"/write/{key}/live?room=a&read={key}&name=b") == (
        "/write/Qm9v…/live?room=a&read=Qm9v…&name=b"
    )


def _hit(base: str, hook) -> None:  # type: ignore[no-untyped-def]
    assert httpx.post(f"{base}/write/{write_key(hook)}/path", json={}).status_code == 500
    assert httpx.get(f"{base}/read/{read_key(hook)}?x=1").status_code == 200


def test_uvicorn_logs_no_key(make_hook, tmp_path: Path) -> None:
    hook = make_hook(FAILING)
    with asgi_process(tmp_path) as server:
        _hit(server.url, hook)
        output = server.output()
    assert "Internal Server Error" in output or "500" in output
    for token in (write_key(hook), read_key(hook)):
        assert token not in output
        assert token[:4] + "…" in output


def test_gunicorn_logs_no_key(make_hook, tmp_path: Path) -> None:
    hook = make_hook(FAILING)
    with wsgi_server(tmp_path, workers=1, threads=2) as base:
        _hit(base, hook)
    output = "".join(p.read_text(errors="replace") for p in tmp_path.glob("gunicorn-*.log"))
    assert " 500 " in output or "Internal Server Error" in output
    for token in (write_key(hook), read_key(hook)):
        assert token not in output
        assert token[:4] + "…" in output
