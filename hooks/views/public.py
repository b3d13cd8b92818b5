"""The public endpoints (docs/pipeline.md): no login, the key in the URL is the credential."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from rest_framework.views import APIView

from hooks import public_calls, reads, writes
from hooks.models import Key
from hooks.responses import json_error, preflight, render, retry_after


def _error(error: public_calls.PublicError) -> HttpResponse:
    response = json_error(error.status, error.code, error.message)
    if error.retry_after is not None:
        retry_after(response, error.retry_after)
    return response


def _reply(reply: public_calls.Reply) -> HttpResponse:
    return render(
        reply.status,
        reply.headers,
        reply.body,
        raw_json=reply.raw_json,
        server_headers=reply.server_headers,
    )


def stored_headers(request: HttpRequest) -> dict[str, str]:
    # A browser on WebReducer's own origin would send its session cookie with a write: the
    # key is the credential here, and the log must not keep anyone's session.
    return {name: value for name, value in request.headers.items() if name.lower() != "cookie"}


def _query(request: HttpRequest) -> dict[str, list[str]]:
    return {name: request.GET.getlist(name) for name in request.GET}


class PublicApi(APIView):
    """No authentication, no parsing: the body is read byte-exact by the view itself."""

    authentication_classes = ()
    permission_classes = ()
    parser_classes = ()
    throttle_classes = ()

    def options(self, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        if request.META.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"):
            return preflight(request.META.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", ""))
        return self.http_method_not_allowed(request, *args, **kwargs)


class WriteApi(PublicApi):
    """ANY /write/<key>[/<path>]: store the request, answer with the responder.

    Every method is a write (OPTIONS too, unless it is a CORS preflight): DRF sends methods
    without a handler to http_method_not_allowed, which is the write here.
    """

    @property
    def allowed_methods(self) -> list[str]:
        return ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

    def http_method_not_allowed(self, request, token: str, path: str = ""):  # type: ignore[no-untyped-def]
        return self.write(request._request, token, path)

    def write(self, request: HttpRequest, token: str, path: str) -> HttpResponse:
        try:
            key = public_calls.key_resolve(token=token, kind=Key.Kind.WRITE)
            limit = writes.max_body_bytes(key)
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
            if declared > limit:
                raise public_calls.PublicError(413, "too_large", f"The body is over {limit} bytes.")
            writes.rate_check(key)
            body = request.read(limit + 1)
            if len(body) > limit:
                raise public_calls.PublicError(413, "too_large", f"The body is over {limit} bytes.")
            reply = writes.request_ingest(
                key=key,
                method=request.method or "GET",
                path=path,
                headers=stored_headers(request),
                query=_query(request),
                content_type=request.content_type or "",
                body=body,
            )
        except public_calls.PublicError as error:
            return _error(error)
        return _reply(reply)


class ReadApi(PublicApi):
    """GET /read/<key>[?params]: the queried state, with X-WebReducer-Seq."""

    def get(self, request, token: str):  # type: ignore[no-untyped-def]
        return self.read(request._request, token)

    def read(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            key = public_calls.key_resolve(token=token, kind=Key.Kind.READ)
            reply = reads.state_read(key=key, params=_query(request))
        except public_calls.PublicError as error:
            return _error(error)
        return _reply(reply)
