"""Every management route, including ones added later: no credentials → 401, outsider → 404.

The routes are found by walking the URL resolver, so a route added under /api/ is checked
without anyone editing this file. Parameters are filled with alice's objects; when a route
takes a parameter this file does not know, the test fails and says which.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern, RoutePattern
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, User
from accounts.services import api_token_create
from hooks import crypto
from hooks.models import Hook, Key, Request, Secret
from hooks.services import hook_create

# Public by design: the schema and its docs page, the visitor quick start, the sign-in routes.
PUBLIC = ("api/schema", "api/docs", "api/visitors/", "api/auth/")
METHODS = ("get", "post", "put", "patch", "delete")
UNFILLABLE = "\x00"
PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


@dataclass(frozen=True)
class Route:
    route: str  # e.g. "api/hooks/<uuid:id>/keys/<int:key_id>/"
    methods: tuple[str, ...]

    @property
    def params(self) -> list[str]:
        return [m["name"] for m in PARAM.finditer(self.route)]

    def __str__(self) -> str:
        return "/" + self.route


def _pattern_route(pattern: Any) -> str:
    if isinstance(pattern, RoutePattern):
        return str(pattern._route)
    if isinstance(pattern, RegexPattern):
        # re_path() and DRF routers: named groups become <name>, like path() parameters.
        regex = pattern._regex.lstrip("^").rstrip("$").replace("\\Z", "")
        regex = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"<\1>", regex)
        regex = regex.replace("\\.", ".").replace("/?", "/")
        if re.search(r"[()\[\]\\*+?|]", regex):
            return UNFILLABLE + regex
        return regex
    raise AssertionError(f"unknown URL pattern type {type(pattern)!r}")


def _methods(callback: Any) -> tuple[str, ...]:
    if getattr(callback, "actions", None):  # DRF viewset routes
        return tuple(m for m in METHODS if m in callback.actions)
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view_class is None:
        return ("get",)
    return tuple(m for m in METHODS if hasattr(view_class, m))


def _walk(patterns: list[Any], prefix: str = "") -> Iterator[Route]:
    for pattern in patterns:
        route = prefix + _pattern_route(pattern.pattern)
        if not (route.startswith("api/") or "api/".startswith(route)):
            continue  # outside /api/ (the admin, the public endpoints, the web pages)
        if UNFILLABLE in route:
            raise AssertionError(
                f"test_access cannot fill the regex route /{route.replace(UNFILLABLE, '')}: "
                "use path() converters for management routes"
            )
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield Route(route=route, methods=_methods(pattern.callback))


def management_routes() -> list[Route]:
    routes = {}
    for route in _walk(get_resolver().url_patterns):
        # DRF's format-suffix twins (/api/hooks.json) are the same views.
        if "format" in route.params:
            continue
        if route.route.startswith("api/") and not route.route.startswith(PUBLIC):
            routes[route.route] = route
    return sorted(routes.values(), key=str)


ROUTES = management_routes()
CASES = [(route, method) for route in ROUTES for method in route.methods]
OWNED = [(route, method) for route, method in CASES if route.params]


def test_it_finds_the_management_routes() -> None:
    found = {str(r) for r in ROUTES}
    assert {"/api/me/", "/api/tokens/", "/api/tokens/<int:id>/"} <= found
    assert not any(r.startswith(("/api/visitors/", "/api/auth/")) for r in found)


@dataclass
class World:
    hook: Hook
    key: Key
    secret: Secret
    api_token: ApiToken
    request: Request


@pytest.fixture
def world(alice: User) -> World:
    hook = hook_create(owner=alice, name="alice's")
    secret = Secret.objects.create(
        hook=hook,
        name="API_KEY",
        ciphertext=crypto.encrypt("s3cret"),
        fingerprint=crypto.fingerprint("s3cret"),
    )
    api_token, _ = api_token_create(user=alice, name="alice's")
    key = hook.keys.get(kind=Key.Kind.WRITE)
    request = Request.objects.create(hook=hook, key=key, method="POST", received_at=timezone.now())
    return World(hook=hook, key=key, secret=secret, api_token=api_token, request=request)


def url_for(route: Route, world: World) -> str:
    def value(match: re.Match[str]) -> str:
        name = match["name"]
        if name in ("id", "pk", "hook_id", "token_id"):
            if route.route.startswith("api/tokens/"):
                return str(world.api_token.pk)
            return str(world.hook.pk)
        if name == "key_id":
            return str(world.key.pk)
        if name == "name":
            return world.secret.name
        if name == "number":
            return "1"
        if name == "request_id":
            return str(world.request.uuid)
        raise AssertionError(
            f"test_access does not know how to fill <{name}> in /{route.route}: "
            "teach url_for() which of alice's objects it names"
        )

    return "/" + PARAM.sub(value, route.route)


def call(client: APIClient, method: str, url: str) -> Any:
    return client.generic(method.upper(), url, data="{}", content_type="application/json")


@pytest.mark.parametrize(("route", "method"), CASES, ids=[f"{m.upper()} {r}" for r, m in CASES])
def test_it_answers_401_without_credentials(route: Route, method: str, world: World) -> None:
    response = call(APIClient(), method, url_for(route, world))

    assert response.status_code == 401, response.content
    assert "error" in response.json()


@pytest.mark.parametrize(("route", "method"), OWNED, ids=[f"{m.upper()} {r}" for r, m in OWNED])
@pytest.mark.parametrize("outsider_name", ["bob", "visitor"])
def test_it_answers_404_to_an_outsider(
    route: Route,
    method: str,
    outsider_name: str,
    world: World,
    request: pytest.FixtureRequest,
    client_for: Callable[[User | None], APIClient],
) -> None:
    outsider = request.getfixturevalue(outsider_name)

    response = call(client_for(outsider), method, url_for(route, world))

    assert response.status_code == 404, response.content
    assert response.json() == {"error": {"code": "not_found", "message": "Not found."}}
    # …and changed nothing of alice's.
    world.hook.refresh_from_db()
    world.api_token.refresh_from_db()
    world.key.refresh_from_db()
    assert world.api_token.revoked_at is None
    assert world.key.is_usable
    assert Secret.objects.filter(pk=world.secret.pk).exists()
