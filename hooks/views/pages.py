"""The UI's pages: the landing, the hooks list, a hook's page, settings, delete and archive."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Count, IntegerField, Max, OuterRef, Prefetch, Subquery
from django.db.models.functions import Length
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import visitor_required
from accounts.models import User
from hooks import services
from hooks.models import MAIN_ROOM, Hook, Key, Request, Secret, State, Version
from hooks.replay import replay_progress
from hooks.selectors import hook_get_for_user, hook_list_for_user, request_counts
from hooks.serializers import OUTCOMES, key_url
from hooks.services import EXAMPLE_CODE, hook_archive, hook_create, hook_update
from hooks.testcases import tests_get
from hooks.views import common, samples
from hooks.views.forms import HookCreateForm, HookSettingsForm, KeyCreateForm, SecretForm
from hooks.views.starters import STARTERS, STARTERS_BY_SLUG
from webreducer.origins import websocket_url

EXAMPLE_NAME = "Counter example"
TEST_METHODS = ["POST", "PUT", "PATCH", "DELETE", "GET"]
TEST_CONTENT_TYPES = ["application/json", "text/plain", "application/x-www-form-urlencoded"]
EXAMPLE_DESCRIPTION = "Counts requests and adds up the number field of JSON bodies."


@visitor_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """A first visit lands on a working example hook; later visits on the hooks list."""
    user = request.user
    assert isinstance(user, User)
    with transaction.atomic():
        # Two tabs opening the site at once must not make two examples.
        User.objects.select_for_update().filter(pk=user.pk).first()
        hooks = list(hook_list_for_user(user=user).order_by("created_at")[:2])
        if not hooks and user.is_visitor:
            hook = hook_create(owner=user, name=EXAMPLE_NAME, code=EXAMPLE_CODE)
            hook_update(hook=hook, description=EXAMPLE_DESCRIPTION)
            hooks = [hook]
    if user.is_visitor and len(hooks) == 1:
        return redirect("hooks:detail", hook_id=hooks[0].pk)
    return redirect("hooks:list")


@visitor_required
@require_GET
def hook_list(request: HttpRequest) -> HttpResponse:
    main = State.objects.filter(version_id=OuterRef("live_version_id"), room=MAIN_ROOM)
    state_size = main.annotate(size=Length("value"))
    live_seq = main.values("seq")[:1]
    hooks = (
        hook_list_for_user(user=request.user)
        .annotate(
            request_count=Count("requests"),
            last_activity=Max("requests__received_at"),
            state_size=Subquery(state_size.values("size")[:1], output_field=IntegerField()),
            seq=Subquery(live_seq),
        )
        .select_related("live_version")
        .order_by("-created_at")
    )
    rows = list(hooks)
    for hook in rows:
        hook.state_size_text = common.human_bytes(hook.state_size)  # type: ignore[attr-defined]
    return render(
        request,
        "hooks/list.html",
        {
            "hooks": rows,
            "form": HookCreateForm(),
            "starters": STARTERS,
            "visitor_days": settings.WR_VISITOR_MAX_AGE_DAYS,
        },
    )


@visitor_required
@require_POST
def hook_new(request: HttpRequest) -> HttpResponse:
    form = HookCreateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The hook could not be created: check the form.")
        return redirect("hooks:list")
    starter = STARTERS_BY_SLUG[form.cleaned_data["starter"]]
    user = request.user
    assert isinstance(user, User)
    hook = hook_create(
        owner=user, name=form.cleaned_data["name"] or starter.title, code=starter.code
    )
    hook_update(hook=hook, description=starter.summary if starter.code else "")
    messages.success(request, f"Created “{hook.name}”. Send it a request to see it work.")
    return redirect("hooks:detail", hook_id=hook.pk)


def _hook_for_page(request: HttpRequest, hook_id: object) -> Hook:
    hook = hook_get_for_user(user=request.user, hook_id=hook_id)
    # The one authorised hook, reloaded with what the page shows.
    return (
        Hook.objects.select_related("live_version")
        .prefetch_related(Prefetch("keys", queryset=Key.objects.order_by("created_at", "id")))
        .get(pk=hook.pk)
    )


def detail_context(request: HttpRequest, hook: Hook) -> dict[str, Any]:
    write_key = common.usable_key(hook, Key.Kind.WRITE)
    read_key = common.usable_key(hook, Key.Kind.READ)
    live = hook.live_version
    versions = list(
        Version.objects.filter(hook=hook).select_related("author").order_by("-number")[:20]
    )
    building = next((v for v in versions if v.status == Version.Status.BUILDING), None)
    rows, more = common.log_page(hook)
    counts = request_counts(hook=hook)
    starter = next(
        (s for s in STARTERS if s.code and s.code == (live.code if live else None)), None
    )
    sample = (starter or STARTERS[0]).sample
    slug = starter.slug if starter else None
    signs_with = samples.signer_secret(slug)
    headers = samples.sample_headers(hook=hook, slug=slug, body=sample[3]) if signs_with else None
    tests = tests_get(hook=hook)
    return {
        "hook": hook,
        "live": live,
        "draft_changed": hook.draft_code != (live.code if live else ""),
        "write_key": write_key,
        "read_key": read_key,
        "write_url": key_url(write_key) if write_key else "",
        "read_url": key_url(read_key) if read_key else "",
        "live_url": websocket_url(key_url(read_key)) + "/live" if read_key else "",
        "curl": common.curl_line(write_key, sample[3]),
        "sample": sample,
        "sample_headers": samples.headers_text(headers),
        "signs_with": signs_with,
        "sample_slug": slug or "",
        "signs_missing": bool(signs_with) and headers is None,
        "tests_json": json.dumps(tests["cases"], indent=2, ensure_ascii=False),
        "tests_required": tests["required"],
        "outcomes": OUTCOMES,
        "state": common.live_state(hook),
        "versions": versions,
        "building": building,
        "building_progress": replay_progress(building) if building else None,
        "rows": rows,
        "more": more,
        "request_total": sum(counts.values()),
        "counts": counts,
        "keys": list(hook.keys.all()),
        "secrets": list(Secret.objects.filter(hook=hook).order_by("name")),
        "key_form": KeyCreateForm(),
        "secret_form": SecretForm(),
        "methods": TEST_METHODS,
        "content_types": TEST_CONTENT_TYPES,
        "visitor_days": settings.WR_VISITOR_MAX_AGE_DAYS,
        "public_root": common.public_root(),
        "settings_form": HookSettingsForm(
            initial={"name": hook.name, "description": hook.description}
        ),
        "config": {
            "hookId": str(hook.pk),
            "api": reverse("hooks-api:hook", kwargs={"hook_id": hook.pk}),
            "draftUrl": reverse("hooks:draft", kwargs={"hook_id": hook.pk}),
            "logUrl": reverse("hooks:log", kwargs={"hook_id": hook.pk}),
            "stateUrl": reverse("hooks:state", kwargs={"hook_id": hook.pk}),
            "versionsUrl": reverse("hooks:versions", kwargs={"hook_id": hook.pk}),
            "signUrl": reverse("hooks:sign", kwargs={"hook_id": hook.pk}) if signs_with else "",
            "requestsApi": reverse("hooks-api:requests", kwargs={"hook_id": hook.pk}),
            "roomsApi": reverse("hooks-api:rooms", kwargs={"hook_id": hook.pk}),
            "wsPath": f"/ws/hooks/{hook.pk}/",
            # Absolute: on split origins the write URL is on the public host (CORS is open).
            "writeUrl": key_url(write_key) if write_key else "",
            "liveVersion": live.number if live else None,
            "building": building.number if building else None,
        },
    }


@login_required
@require_GET
def hook_detail(request: HttpRequest, hook_id: str) -> HttpResponse:
    hook = _hook_for_page(request, hook_id)
    return render(request, "hooks/detail.html", detail_context(request, hook))


@login_required
@require_POST
def hook_settings(request: HttpRequest, hook_id: str) -> HttpResponse:
    hook = hook_get_for_user(user=request.user, hook_id=hook_id)
    form = HookSettingsForm(request.POST)
    if form.is_valid():
        hook_update(
            hook=hook, name=form.cleaned_data["name"], description=form.cleaned_data["description"]
        )
        messages.success(request, "Saved the name and description.")
    else:
        messages.error(request, "The name is required (up to 100 characters).")
    return redirect(reverse("hooks:detail", kwargs={"hook_id": hook.pk}) + "#settings")


@login_required
@require_http_methods(["GET", "POST"])
def hook_delete(request: HttpRequest, hook_id: str) -> HttpResponse:
    hook = hook_get_for_user(user=request.user, hook_id=hook_id)
    if request.method == "POST":
        name = hook.name
        services.hook_delete(hook=hook)
        messages.success(request, f"Deleted “{name}” and its history.")
        return redirect("hooks:list")
    return render(
        request,
        "hooks/confirm.html",
        {
            "hook": hook,
            "title": f"Delete “{hook.name}”?",
            "explanation": "Its code, versions, keys, secrets, stored requests and state are "
            "deleted for good. Its write and read URLs stop working at once.",
            "action": reverse("hooks:delete", kwargs={"hook_id": hook.pk}),
            "button": "Delete this hook",
            "request_count": Request.objects.filter(hook=hook).count(),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def hook_reset(request: HttpRequest, hook_id: str) -> HttpResponse:
    hook = hook_get_for_user(user=request.user, hook_id=hook_id)
    if request.method == "POST":
        hook_archive(hook=hook)
        messages.success(request, "The history was reset: the state is null at seq 0.")
        return redirect("hooks:detail", hook_id=hook.pk)
    return render(
        request,
        "hooks/confirm.html",
        {
            "hook": hook,
            "title": f"Reset the history of “{hook.name}”?",
            "explanation": "Every stored request is deleted and the state goes back to null at "
            "seq 0. The code, versions, keys and secrets stay.",
            "action": reverse("hooks:reset", kwargs={"hook_id": hook.pk}),
            "button": "Reset the history",
            "request_count": Request.objects.filter(hook=hook).count(),
        },
    )
