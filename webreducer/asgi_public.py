"""The public endpoints under ASGI, on threads of their own.

Django runs every sync view of an ASGI process on ONE thread (sync_to_async with
thread_sensitive=True): one slow responder or query there held up every HTTP request of the
process, other hooks' and the app's alike. Under ASGI the write and read views therefore run on
a pool of WR_ASGI_PUBLIC_THREADS threads instead (their code is thread-safe: no ORM
transactions span threads, and the sandbox sessions are per call), with the same per-hook slots
as under WSGI (hooks.serving). Each call gives its database connection back when it ends: the
pool of connections is per process (WR_DB_POOL_MAX_SIZE), so any number of concurrent requests
holds at most that many.

Django picks the view by `request.urlconf`, which the request class below sets to
webreducer.asgi_urls: the same routes, with the public views wrapped. WSGI is unchanged. The
public paths also cross the short middleware chain of webreducer/handlers.py, as under WSGI.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponseBase

from webreducer.handlers import PublicChain

_executor: ThreadPoolExecutor | None = None


def executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        from django.conf import settings

        _executor = ThreadPoolExecutor(
            max_workers=max(1, settings.WR_ASGI_PUBLIC_THREADS), thread_name_prefix="public"
        )
    return _executor


def _run(view: Callable[..., HttpResponseBase], request: HttpRequest, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
    try:
        return view(request, *args, **kwargs)
    finally:
        # In this thread and context: with the pool this hands the connection back (Django's
        # request_finished runs elsewhere and would never see it).
        close_old_connections()


def on_public_threads(view: Callable[..., HttpResponseBase]) -> Callable[..., Any]:
    """An async view that runs the sync `view` on the public threads."""

    @functools.wraps(view)
    async def threaded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        call = sync_to_async(_run, thread_sensitive=False, executor=executor())
        return await call(view, request, *args, **kwargs)

    # csrf_exempt and friends are attributes of the wrapped view: functools.wraps copies them.
    return threaded


class PublicThreadsRequest(ASGIRequest):
    urlconf = "webreducer.asgi_urls"


class PublicThreadsHandler(ASGIHandler):
    request_class = PublicThreadsRequest


class PublicChainHandler(PublicChain, PublicThreadsHandler):
    pass


def get_application() -> Any:
    """Like django.core.asgi.get_asgi_application(), with the public views on their threads and
    the public paths on the short middleware chain (webreducer/handlers.py)."""
    import django

    django.setup(set_prefix=False)
    from webreducer.origins import is_public_path

    app, public = PublicThreadsHandler(), PublicChainHandler()

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        handler = public if is_public_path(scope.get("path", "")) else app
        return await handler(scope, receive, send)

    return application
