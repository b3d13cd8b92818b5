"""Operators' view of hooks. Secret values, their ciphertext and key tokens are never displayed."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from hooks.models import Hook, Key, Request, Secret, Version
from hooks.services import hooks_set_paused, keys_update, live_recheck

BODY_PREVIEW_BYTES = 4096


def _masked(token: str) -> str:
    # Enough to match a key a user quotes; not enough to write to or read from the hook.
    return f"{token[:6]}…" if token else ""


def _key_edited(form: forms.ModelForm) -> bool:
    return bool({"is_paused", "revoked_at"} & set(form.changed_data))


class KeyInline(admin.TabularInline):
    model = Key
    fields = ["kind", "masked_token", "label", "is_paused", "revoked_at", "created_at"]
    readonly_fields = ["kind", "masked_token", "created_at"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="token")
    def masked_token(self, key: Key) -> str:
        return _masked(key.token)


class SecretInline(admin.TabularInline):
    model = Secret
    fields = ["name", "fingerprint", "created_at", "updated_at"]
    readonly_fields = fields  # type: ignore[assignment]
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Hook)
class HookAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "id",
        "owner",
        "owner_is_visitor",
        "live_version_number",
        "is_paused",
        "created_at",
        "updated_at",
    ]
    list_filter = ["is_paused", "owner__is_visitor", "created_at"]
    search_fields = ["=id", "name", "owner__email", "owner__username"]
    list_select_related = ["owner", "live_version"]
    raw_id_fields = ["owner"]
    readonly_fields = ["id", "live_version", "created_at", "updated_at"]
    fields = [
        "id",
        "name",
        "owner",
        "description",
        "is_paused",
        "limits",
        "live_version",
        "draft_code",
        "created_at",
        "updated_at",
    ]
    inlines = [KeyInline, SecretInline]
    actions = ["pause", "unpause"]

    def save_model(
        self, request: HttpRequest, obj: Hook, form: forms.ModelForm, change: bool
    ) -> None:
        live = ("is_paused", "limits")
        before = Hook.objects.filter(pk=obj.pk).values(*live).first()
        super().save_model(request, obj, form, change)
        # Pausing closes the hook's live connections; new limits reach its live queries. (Compared
        # with the stored row, not the form's changed_data: for `limits`, a field with a callable
        # default, that depends on a hidden initial value the client posts back.)
        if before is not None and any(before[name] != getattr(obj, name) for name in live):
            live_recheck(hook_id=obj.pk)

    def save_formset(
        self, request: HttpRequest, form: forms.ModelForm, formset: Any, change: bool
    ) -> None:
        super().save_formset(request, form, formset, change)
        for key_form in formset.forms:
            if isinstance(key_form.instance, Key) and _key_edited(key_form):
                live_recheck(hook_id=key_form.instance.hook_id, key_id=key_form.instance.pk)

    @admin.display(description="visitor", boolean=True, ordering="owner__is_visitor")
    def owner_is_visitor(self, hook: Hook) -> bool:
        return hook.owner.is_visitor

    @admin.display(description="live version", ordering="live_version__number")
    def live_version_number(self, hook: Hook) -> int | None:
        return hook.live_version.number if hook.live_version else None

    @admin.action(
        description="Pause the selected hooks (their keys answer 404)", permissions=["change"]
    )
    def pause(self, request: HttpRequest, queryset: QuerySet[Hook]) -> None:
        count = hooks_set_paused(hook_ids=list(queryset.values_list("pk", flat=True)), paused=True)
        self.message_user(request, f"Paused {count} hook(s).", messages.SUCCESS)

    @admin.action(description="Unpause the selected hooks", permissions=["change"])
    def unpause(self, request: HttpRequest, queryset: QuerySet[Hook]) -> None:
        count = hooks_set_paused(hook_ids=list(queryset.values_list("pk", flat=True)), paused=False)
        self.message_user(request, f"Unpaused {count} hook(s).", messages.SUCCESS)


@admin.register(Version)
class VersionAdmin(admin.ModelAdmin):
    list_display = ["hook", "number", "status", "functions", "author", "created_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["=hook__id", "hook__name"]
    list_select_related = ["hook", "author"]
    fields = ["hook", "number", "status", "functions", "author", "code", "created_at"]
    readonly_fields = fields  # type: ignore[assignment]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Versions are immutable: history replays depend on it.
        return False


@admin.register(Key)
class KeyAdmin(admin.ModelAdmin):
    list_display = [
        "hook",
        "kind",
        "masked_token",
        "label",
        "is_paused",
        "revoked_at",
        "created_at",
    ]
    list_filter = ["kind", "is_paused", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["=hook__id", "hook__name", "label"]
    list_select_related = ["hook"]
    fields = ["hook", "kind", "masked_token", "label", "is_paused", "revoked_at", "created_at"]
    readonly_fields = ["hook", "kind", "masked_token", "created_at"]
    actions = ["pause_keys", "resume_keys", "revoke_keys"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="token")
    def masked_token(self, key: Key) -> str:
        return _masked(key.token)

    def save_model(
        self, request: HttpRequest, obj: Key, form: forms.ModelForm, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        if change and _key_edited(form):  # open connections on a paused or revoked key close
            live_recheck(hook_id=obj.hook_id, key_id=obj.pk)

    @admin.action(description="Pause the selected keys", permissions=["change"])
    def pause_keys(self, request: HttpRequest, queryset: QuerySet[Key]) -> None:
        keys_update(keys=list(queryset), paused=True)

    @admin.action(description="Resume the selected keys", permissions=["change"])
    def resume_keys(self, request: HttpRequest, queryset: QuerySet[Key]) -> None:
        keys_update(keys=list(queryset), paused=False)

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[Key]) -> None:
        keys_update(keys=list(queryset), revoke=True)


@admin.register(Request)
class RequestAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "hook",
        "seq",
        "method",
        "path",
        "outcome",
        "response_status",
        "received_at",
        "duration_ms",
    ]
    list_filter = ["outcome", "method"]
    search_fields = ["=uuid", "=hook__id", "idempotency_key"]
    list_select_related = ["hook"]
    # The log grows without bound: no COUNT(*) of the whole table on every page.
    show_full_result_count = False
    fields = [
        "uuid",
        "hook",
        "seq",
        "method",
        "path",
        "headers",
        "query",
        "content_type",
        "body_preview",
        "received_at",
        "outcome",
        "response_status",
        "response",
        "error",
        "console",
        "duration_ms",
        "idempotency_key",
        "duplicate_of",
        "resent_from",
        "state_after",
        "applied_at",
    ]
    readonly_fields = fields  # type: ignore[assignment]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The log is the history replays fold: editing it would rewrite the state.
        return False

    @admin.display(description="body")
    def body_preview(self, request_row: Request) -> str:
        body = bytes(request_row.body or b"")
        text = body[:BODY_PREVIEW_BYTES].decode("utf-8", errors="replace")
        return text + ("…" if len(body) > BODY_PREVIEW_BYTES else "")


@admin.register(Secret)
class SecretAdmin(admin.ModelAdmin):
    # Name and keyed fingerprint only: neither the value nor its ciphertext is ever displayed.
    list_display = ["name", "hook", "fingerprint", "created_at", "updated_at"]
    search_fields = ["name", "=hook__id", "hook__name"]
    list_select_related = ["hook"]
    fields = ["hook", "name", "fingerprint", "created_at", "updated_at"]
    readonly_fields = fields  # type: ignore[assignment]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
