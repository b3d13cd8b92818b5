"""A thin client of the management API (docs/api.md): JSON in, JSON out, errors raised as
ApiError with the server's own message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from webreducer_cli import __version__
from webreducer_cli.errors import ApiError, CliError

TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class Api:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token
        headers = {"User-Agent": f"wr/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT)

    def close(self) -> None:
        self.http.close()

    def require_token(self) -> None:
        if not self.token:
            raise CliError(f"Not logged in to {self.url}: run `wr login` or set WR_TOKEN.")

    def request(self, method: str, path: str, *, json_body: Any = None, **kwargs: Any) -> Any:
        """`path` is relative to the server (`/api/hooks/`) or a full URL (a `next` link)."""
        self.require_token()
        if json_body is not None:
            kwargs["content"] = json.dumps(json_body).encode()
            kwargs.setdefault("headers", {})["Content-Type"] = "application/json"
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise connection_error(self.url, error) from None
        return answer(response)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json_body=body, **kwargs)

    def put(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self.request("PUT", path, json_body=body, **kwargs)

    def patch(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self.request("PATCH", path, json_body=body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    def pages(self, path: str, /, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a cursor-paginated list, following `next` (docs/api.md, Pagination);
        `params` left None are not sent."""
        page = self.get(path, params={k: v for k, v in params.items() if v is not None})
        while True:
            yield from page["results"]
            if not page.get("next"):
                return
            page = self.get(page["next"])

    @contextmanager
    def stream(self, path: str, /, **params: Any) -> Iterator[httpx.Response]:
        """A streamed GET (the NDJSON export): the body is read by the caller, chunk by chunk."""
        self.require_token()
        params = {k: v for k, v in params.items() if v is not None}
        timeout = httpx.Timeout(30.0, connect=10.0, read=120.0)
        # DRF's negotiation refuses ?format=ndjson with `Accept: application/json` (406).
        headers = {"Accept": "application/x-ndjson"}
        try:
            with self.http.stream(
                "GET", path, params=params, headers=headers, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    answer(response)
                yield response
        except httpx.HTTPError as error:
            raise connection_error(self.url, error) from None


def answer(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        if response.status_code >= 400:
            raise ApiError(response.status_code, "http_error", f"HTTP {response.status_code}", {})
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        reason = response.reason_phrase or "unexpected answer"
        raise ApiError.from_response(response.status_code, body, reason)
    if body is None:
        raise CliError(f"{response.request.url} did not answer JSON: is this a WebReducer server?")
    return body


def connection_error(url: str, error: httpx.HTTPError) -> CliError:
    return CliError(f"Cannot reach {url}: {error or type(error).__name__}")
