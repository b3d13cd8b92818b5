"""The docs page: docs/functions.md, docs/helpers.md and the client part of docs/realtime.md as
HTML, the limits in force, examples. static/js/docs.js adds the search."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import markdown  # type: ignore[import-untyped]
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_GET

from hooks.views.common import human_bytes, public_root
from hooks.views.starters import STARTERS
from webreducer.origins import websocket_url

DOCS = settings.BASE_DIR / "docs"
SOURCES = ("functions.md", "helpers.md")
# (file, its section for clients, the heading it gets here): the server's side stays in the repo.
CLIENT_PARTS = (("realtime.md", "## For clients", "# Live updates"),)


@dataclass(frozen=True)
class Rendered:
    html: SafeString
    toc: list[dict[str, Any]]


@lru_cache(maxsize=8)
def _render(path: Path, mtime: float, part: tuple[str, str] | None = None) -> Rendered:
    # The files are the repository's own (trusted) docs; the mtime in the cache key picks up
    # edits in development without a restart.
    text = path.read_text(encoding="utf-8")
    if part is not None:
        heading, title = part
        start = text.index(heading + "\n")
        end = text.find("\n## ", start + len(heading))
        text = title + text[start + len(heading) : end if end >= 0 else None]
    md = markdown.Markdown(
        extensions=["fenced_code", "tables", "toc", "sane_lists"],
        extension_configs={"toc": {"baselevel": 2, "permalink": False}},
    )
    html = md.convert(text)
    return Rendered(html=mark_safe(html), toc=list(md.toc_tokens))  # type: ignore[attr-defined]  # noqa: S308


def rendered(name: str, part: tuple[str, str] | None = None) -> Rendered:
    path = DOCS / name
    return _render(path, path.stat().st_mtime, part)


def limits() -> list[tuple[str, str, str]]:
    s = settings
    return [
        ("Request body", human_bytes(s.WR_MAX_BODY_BYTES), "413 Payload Too Large"),
        (
            "Writes per key",
            f"{s.WR_RATE_PER_SECOND:g}/s sustained, bursts of {s.WR_RATE_BURST}",
            "429 with Retry-After",
        ),
        ("Code", human_bytes(s.WR_MAX_CODE_BYTES), "refused when saved"),
        (
            "State (serialised)",
            human_bytes(s.WR_MAX_STATE_BYTES),
            "the request fails; state unchanged",
        ),
        (
            "CPU / wall time per call",
            f"{s.WR_CPU_SECONDS:g} s / {s.WR_WALL_SECONDS:g} s",
            "the call fails",
        ),
        ("Memory per sandbox", human_bytes(s.WR_MEMORY_BYTES), "the call fails"),
        (
            "Console output per request",
            human_bytes(s.WR_MAX_OUTPUT_BYTES),
            "truncated with a marker",
        ),
        (
            "Secrets",
            f"{s.WR_MAX_SECRETS} per hook, {human_bytes(s.WR_MAX_SECRET_BYTES)} each",
            "refused when set",
        ),
    ]


@require_GET
def docs(request: HttpRequest) -> HttpResponse:
    documents = [rendered(name) for name in SOURCES]
    documents += [rendered(name, (heading, title)) for name, heading, title in CLIENT_PARTS]
    return render(
        request,
        "docs/index.html",
        {
            "documents": documents,
            "limits": limits(),
            "starters": [s for s in STARTERS if s.code],
            "public_root": public_root(),
            "public_ws_root": websocket_url(public_root()),
        },
    )
