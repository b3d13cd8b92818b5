"""The public endpoints' own Django handlers: the same URLs and views, a shorter middleware chain.

A write or a read never has a session, a user, a CSRF token, messages, an allauth flow or a
static file: the middleware that provides those did nothing for them but cost a seventh of a
write's time under cProfile (docs/performance.md, "Write path"). The
WSGI and ASGI applications (webreducer/wsgi.py, webreducer/asgi_public.py) send the public
paths (webreducer.origins.is_public_path) to a handler that loads WR_PUBLIC_MIDDLEWARE instead
of MIDDLEWARE: what a public answer needs (the origin guard and its user-content headers, the
security headers, Content-Length), in the same order.

Only middleware that is both sync and async capable (MiddlewareMixin) with no process_view,
process_exception or process_template_response fits this chain; anything else is refused at
start-up, so a middleware added there cannot be silently skipped.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.utils.module_loading import import_string

HOOKS = ("process_view", "process_exception", "process_template_response")


class PublicChain(BaseHandler):
    """A handler mixin: WR_PUBLIC_MIDDLEWARE instead of MIDDLEWARE."""

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list[Any] = []
        self._template_response_middleware: list[Any] = []
        self._exception_middleware: list[Any] = []
        # Private in Django, so not in its stubs: the view call every chain ends in.
        innermost = getattr(self, "_get_response_async" if is_async else "_get_response")
        handler: Any = convert_exception_to_response(innermost)
        for path in reversed(settings.WR_PUBLIC_MIDDLEWARE):
            middleware = import_string(path)
            if path not in settings.MIDDLEWARE:
                raise ImproperlyConfigured(f"{path} is in WR_PUBLIC_MIDDLEWARE, not in MIDDLEWARE")
            both = getattr(middleware, "sync_capable", True) and getattr(
                middleware, "async_capable", False
            )
            if not both or any(hasattr(middleware, hook) for hook in HOOKS):
                raise ImproperlyConfigured(
                    f"{path} cannot run in WR_PUBLIC_MIDDLEWARE: it must be sync and async "
                    f"capable, without {', '.join(HOOKS)}"
                )
            # A MiddlewareMixin takes the mode (sync or async) of what it wraps.
            handler = convert_exception_to_response(middleware(handler))
        self._middleware_chain = handler


class PublicWSGIHandler(PublicChain, WSGIHandler):
    pass


def wsgi_application() -> Any:
    """Django's WSGI application, with the public paths on their own handler."""
    from django.core.wsgi import get_wsgi_application

    from webreducer.origins import is_public_path

    app = get_wsgi_application()  # sets Django up
    public = PublicWSGIHandler()

    def application(environ: dict[str, Any], start_response: Any) -> Any:
        handler = public if is_public_path(environ.get("PATH_INFO", "")) else app
        return handler(environ, start_response)

    return application
