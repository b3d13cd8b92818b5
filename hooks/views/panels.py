"""Parts of a hook's page that refresh on their own (the log, a request, the state, versions)
and the forms of its keys and secrets panels.

The forms post like any Django form (CSRF token, redirect back to the page). static/js/app.js
submits them with `X-Requested-With: fetch` instead, and then gets the panel's new HTML to swap
in, so the editor on the page keeps its place.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from hooks import rooms, services
from hooks.models import Hook, Key, Request, Secret, Version
from hooks.selectors import hook_get_for_user, key_get_for_hook, log_entry_get
from hooks.services import (
    KeyRevoked,
    SecretError,
    draft_save,
    key_create,
    key_revoke,
    key_set_paused,
    secret_set,
)
from hooks.views import common, samples
from hooks.views.bodies import body_taken_as
from hooks.views.forms import KeyCreateForm, SecretForm
from sandbox import CodeError


def _is_fetch(request: HttpRequest) -> bool:
    return request.headers.get("X-Requested-With") == "fetch"


@login_required
@require_GET
def log(request: HttpRequest, hook_id: str) -> HttpResponse:
    """Rows of the request log, newest first: the first page, or the one before `?before=<id>`."""
    hook = hook_get_for_user(user=request.user, hook_id=hook_id)
    before = request.GET.get("before", "")
    rows, more = common.log_page(
        hook,
        before=int(before) if before.isdigit() else None,
        outcome=request.GET.get("status", ""),
        path=request.GET.get("path", "")[:2000],
        room=_room(request) if "room" in request.GET else None,
    )
    return render(request, "hooks/_log_page.html", {"hook": hook, "rows": rows, "more": more})


@login_required
@require_GET
def request_detail(request: HttpRequest, hook_id: str, request_id: str) -> HttpResponse:
    hook = hook_get_for_user(user=request.user, hook_id=hook_id)
    entry = log_entry_get(hook=hook, request_id=request_id)
    if entry is None:
        raise Http404("No such request.")
    error = entry.error if isinstance(entry.error, dict) else None
    answer = entry.response if isinstance(entry.response, dict) else None
    resent_from = (
        Request.objects.filter(pk=entry.resent_from_id).values("seq", "uuid").first()
        if entry.resent_from_id
        else None
    )
    return render(
        request,
        "hooks/_request_detail.html",
        {
            "hook": hook,
            "row": entry,
            "error": error,
            "body_pretty": _body_pretty(entry),
            "taken_as": body_taken_as(entry.content_type, entry.body_text),  # type: ignore[attr-defined]
            "state_after": common.pretty_json(entry.state_after_value)  # type: ignore[attr-defined]
            if entry.state_after is not None
            else "",
            "diff": _diff_display(entry.state_diff),  # type: ignore[attr-defined]
            "answer": answer,
            "answer_body": _answer_pretty(answer),
            "resent_from": resent_from,
        },
    )


def _answer_pretty(answer: dict[str, Any] | None) -> str:
    if answer is None:
        return ""
    body = answer.get("body")
    if isinstance(body, str):
        return body[: common.MAX_SHOWN_CHARS]
    return common.pretty_json(body)


@login_required
@require_POST
def sign(request: HttpRequest, hook_id: str) -> HttpResponse:
    """The signed headers of a test request's body for the hook's starter, computed with the
    hook's own secret: the page gets the signature, never the secret."""
    hook = hook_get_for_user(user=request.user, hook_id=hook_id)
    try:
        payload = json.loads(request.body or b"{}")
        body, slug = payload["body"], payload["starter"]
        if not isinstance(body, str) or not isinstance(slug, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return JsonResponse(
            {"error": {"code": "invalid", "message": 'Send {"starter": "…", "body": "…"}.'}},
            status=400,
        )
    headers = samples.sample_headers(hook=hook, slug=slug, body=body)
    if headers is None:
        name = samples.signer_secret(slug)
        message = f"Set the secret {name} first." if name else "This starter signs nothing."
        return JsonResponse({"error": {"code": "no_secret", "message": message}}, status=400)
    return JsonResponse({"headers": headers})


def _diff_display(ops: list[dict[str, Any]] | None) -> list[dict[str, str]] | None:
    """hooks.diff operations with their values as short JSON text."""
    if ops is None:
        return None

    def short(value: Any) -> str:
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 200 else text[:199] + "…"

    return [
        {
            "op": op["op"],
            "path": op["path"],
            "old": short(op.get("old")),
            "value": short(op.get("value")),
        }
        for op in ops
    ]


def _body_pretty(row: Request) -> str:
    text: str = row.body_text  # type: ignore[attr-defined]
    if row.body_encoding == "utf-8" and "json" in row.content_type:  # type: ignore[attr-defined]
        return common.pretty_json_text(text)
    return text[: common.MAX_SHOWN_CHARS]


@login_required
@require_GET
def state(request: HttpRequest, hook_id: str) -> HttpResponse:
    hook = hook_get_for_user(user=request.user, hook_id=hook_id)
    room = _room(request)
    return render(
        request,
        "hooks/_state.html",
        {"state": common.live_state(hook, room), "room": room},
    )


def _room(request: HttpRequest) -> str:
    """The room a panel asks for (`?room=`; empty or invalid: the main room)."""
    name = request.GET.get("room", "")
    return name if name and rooms.name_error(name) is None else rooms.stored_room(None)


@login_required
@require_GET
def versions(request: HttpRequest, hook_id: str) -> HttpResponse:
    hook = hook_get_for_user(user=request.user, hook_id=hook_id)
    return render(request, "hooks/_versions.html", _versions_context(hook))


def _versions_context(hook: Hook) -> dict[str, Any]:
    hook.refresh_from_db(fields=["live_version"])
    rows = list(Version.objects.filter(hook=hook).select_related("author").order_by("-number")[:20])
    return {"hook": hook, "versions": rows, "live": hook.live_version}


# --- The draft ----------------------------------------------------------------------------


@login_required
@require_POST
def draft(request: HttpRequest, hook_id: str) -> HttpResponse:
    """Autosave: check and save the draft. A syntax error is an answer here, not a failed
    request (200 with `saved: false`, its line and column), so typing never logs errors in the
    browser console; the management API's PUT .../draft/ answers 400 for scripts."""
    hook = hook_get_for_user(user=request.user, hook_id=hook_id)
    try:
        payload = json.loads(request.body or b"{}")
        code = payload["code"]
        if not isinstance(code, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": 'Send {"code": "…"} as JSON.'}, status=400)
    try:
        draft_save(hook=hook, code=code)
    except CodeError as error:
        return JsonResponse(
            {
                "saved": False,
                "error": {"message": error.message, "line": error.line, "column": error.column},
            }
        )
    live_code = hook.live_version.code if hook.live_version else ""
    return JsonResponse({"saved": True, "changed": code != live_code})


# --- Keys ---------------------------------------------------------------------------------


def _keys_panel(request: HttpRequest, hook: Hook, error: str = "") -> HttpResponse:
    if not _is_fetch(request):
        if error:
            messages.error(request, error)
        return redirect(reverse("hooks:detail", kwargs={"hook_id": hook.pk}) + "#keys")
    keys = list(Key.objects.filter(hook=hook).order_by("created_at", "id"))
    return render(
        request,
        "hooks/_keys.html",
        {
            "hook": hook,
            "keys": keys,
            "key_form": KeyCreateForm(),
            "keys_error": error,
            "public_root": common.public_root(),
        },
    )


@login_required
@require_POST
def key_new(request: HttpRequest, hook_id: str) -> HttpResponse:
    hook = hook_get_for_user(user=request.user, hook_id=hook_id)
    form = KeyCreateForm(request.POST)
    if not form.is_valid():
        return _keys_panel(request, hook, "Choose a read or a write key.")
    key_create(hook=hook, kind=form.cleaned_data["kind"], label=form.cleaned_data["label"])
    return _keys_panel(request, hook)


KEY_ACTIONS = ("pause", "resume", "revoke")


@login_required
@require_POST
def key_action(request: HttpRequest, hook_id: str, key_id: int, action: str) -> HttpResponse:
    hook = hook_get_for_user(user=request.user, hook_id=hook_id)
    if action not in KEY_ACTIONS:
        raise Http404("No such action.")
    key = key_get_for_hook(hook=hook, key_id=key_id)
    if key is None:
        raise Http404("No such key.")
    try:
        if action == "revoke":
            key_revoke(key=key)
        else:
            key_set_paused(key=key, paused=action == "pause")
    except KeyRevoked as error:
        return _keys_panel(request, hook, str(error))
    return _keys_panel(request, hook)


# --- Secrets ------------------------------------------------------------------------------


def _secrets_panel(
    request: HttpRequest, hook: Hook, *, error: str = "", notice: str = ""
) -> HttpResponse:
    if not _is_fetch(request):
        if error:
            messages.error(request, error)
        elif notice:
            messages.success(request, notice)
        return redirect(reverse("hooks:detail", kwargs={"hook_id": hook.pk}) + "#secrets")
    return render(
        request,
        "hooks/_secrets.html",
        {
            "hook": hook,
            "secrets": list(Secret.objects.filter(hook=hook).order_by("name")),
            "secret_form": SecretForm(),
            "secrets_error": error,
            "secrets_notice": notice,
        },
    )


@login_required
@require_POST
def secret_save(request: HttpRequest, hook_id: str) -> HttpResponse:
    hook = hook_get_for_user(user=request.user, hook_id=hook_id)
    form = SecretForm(request.POST)
    if not form.is_valid():
        return _secrets_panel(request, hook, error="A secret needs a name.")
    name = form.cleaned_data["name"].strip()
    replaced = Secret.objects.filter(hook=hook, name=name).exists()
    try:
        secret_set(hook=hook, name=name, value=form.cleaned_data["value"])
    except SecretError as error:
        return _secrets_panel(request, hook, error=str(error))
    verb = "Replaced" if replaced else "Added"
    return _secrets_panel(request, hook, notice=f"{verb} {name}. Its value is never shown again.")


@login_required
@require_POST
def secret_delete(request: HttpRequest, hook_id: str, name: str) -> HttpResponse:
    hook = hook_get_for_user(user=request.user, hook_id=hook_id)
    if not services.secret_delete(hook=hook, name=name):
        raise Http404("No such secret.")
    return _secrets_panel(request, hook, notice=f"Deleted {name}.")
