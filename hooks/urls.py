"""Routes of the web UI (docs/ui.md). Included last in webreducer/urls.py."""

from __future__ import annotations

from django.urls import path

from hooks.views import docs, pages, panels

app_name = "hooks"

HOOK = "hooks/<uuid:hook_id>/"

urlpatterns = [
    path("", pages.home, name="home"),
    path("docs/", docs.docs, name="docs"),
    path("hooks/", pages.hook_list, name="list"),
    path("hooks/new/", pages.hook_new, name="new"),
    path(HOOK, pages.hook_detail, name="detail"),
    path(HOOK + "settings/", pages.hook_settings, name="settings"),
    path(HOOK + "delete/", pages.hook_delete, name="delete"),
    path(HOOK + "reset/", pages.hook_reset, name="reset"),
    path(HOOK + "draft/", panels.draft, name="draft"),
    path(HOOK + "log/", panels.log, name="log"),
    path(HOOK + "log/<uuid:request_id>/", panels.request_detail, name="request"),
    path(HOOK + "state/", panels.state, name="state"),
    path(HOOK + "sign/", panels.sign, name="sign"),
    path(HOOK + "versions/", panels.versions, name="versions"),
    path(HOOK + "keys/", panels.key_new, name="key-new"),
    path(HOOK + "keys/<int:key_id>/<str:action>/", panels.key_action, name="key-action"),
    path(HOOK + "secrets/", panels.secret_save, name="secret-save"),
    path(HOOK + "secrets/<str:name>/delete/", panels.secret_delete, name="secret-delete"),
]
