"""Helpers for the management API tests: URLs and JSON calls."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client
from rest_framework.test import APIClient

from hooks.models import Hook


def url(hook: Hook | str, *parts: object) -> str:
    hook_id = hook.pk if isinstance(hook, Hook) else hook
    tail = "".join(f"{part}/" for part in parts)
    return f"/api/hooks/{hook_id}/{tail}"


def write(client: Client, token: str, body: Any, path: str = "", **headers: str) -> Any:
    """POST `body` as JSON to the write URL of `token` (under `path`): the one write helper."""
    url = f"/write/{token}" + (f"/{path}" if path else "")
    return client.post(url, json.dumps(body), content_type="application/json", headers=headers)


def read(client: Client, token: str) -> Any:
    return client.get(f"/read/{token}")


def call(api: APIClient, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
    return getattr(api, method)(path, body, format="json", **kwargs)
