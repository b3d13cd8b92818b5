from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from accounts.models import ApiToken, MagicLink, User
from accounts.services import api_token_revoke


class ApiTokenInline(admin.TabularInline):
    model = ApiToken
    fields = ["name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields  # type: ignore[assignment]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = [
        "username",
        "email",
        "is_visitor",
        "hooks_count",
        "date_joined",
        "last_seen_at",
        "is_staff",
        "is_active",
    ]
    list_filter = ["is_visitor", "is_staff", "is_superuser", "is_active"]
    search_fields = ["username", "email"]
    ordering = ["-date_joined"]
    readonly_fields = ["last_login", "date_joined", "last_seen_at"]
    fieldsets = (
        *(DjangoUserAdmin.fieldsets or ()),
        ("WebReducer", {"fields": ["is_visitor", "last_seen_at"]}),
    )
    inlines = [ApiTokenInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return super().get_queryset(request).annotate(hooks_total=Count("hooks"))

    @admin.display(description="hooks", ordering="hooks_total")
    def hooks_count(self, user: User) -> int:
        return getattr(user, "hooks_total", 0)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    # token_hash is never shown: the prefix is enough to tell tokens apart.
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "user__is_visitor"]
    search_fields = ["name", "prefix", "user__email", "user__username"]
    list_select_related = ["user"]
    fields = ["user", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields  # type: ignore[assignment]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A token is shown once to its owner; one made here could never be handed over.
        return False

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for api_token in queryset:
            api_token_revoke(api_token=api_token)


@admin.register(MagicLink)
class MagicLinkAdmin(admin.ModelAdmin):
    """Read-only, to answer "I never got my link"; the token hash is never shown."""

    list_display = ["email", "created_at", "requested_ip", "expires_at", "used_at", "visitor"]
    list_filter = [("used_at", admin.EmptyFieldListFilter)]
    search_fields = ["email"]
    fields = [
        "email",
        "visitor",
        "requested_ip",
        "requested_browser",
        "created_at",
        "expires_at",
        "used_at",
    ]
    readonly_fields = fields  # type: ignore[assignment]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
