"""Routes of the hooks management API, under /api/ (docs/api.md).

Ids are matched as strings and checked by the views, so a malformed one answers the same JSON
404 as a missing one.
"""

from __future__ import annotations

from django.urls import path

from hooks.apis import hooks, keys, requests, rooms, secrets, tests, versions

app_name = "hooks-api"

HOOK = "hooks/<str:hook_id>/"

urlpatterns = [
    path("hooks/", hooks.HookListCreateApi.as_view(), name="hooks"),
    path(HOOK, hooks.HookDetailApi.as_view(), name="hook"),
    path(HOOK + "draft/", hooks.HookDraftApi.as_view(), name="draft"),
    path(HOOK + "state/", hooks.HookStateApi.as_view(), name="state"),
    path(HOOK + "archive/", hooks.HookArchiveApi.as_view(), name="archive"),
    path(HOOK + "publish/", versions.HookPublishApi.as_view(), name="publish"),
    path(HOOK + "dry-run/", versions.HookDryRunApi.as_view(), name="dry-run"),
    path(HOOK + "versions/", versions.VersionListApi.as_view(), name="versions"),
    # Before versions/<number>/, which would match "diff" too.
    path(HOOK + "versions/diff/", versions.VersionDiffApi.as_view(), name="version-diff"),
    path(HOOK + "versions/<str:number>/", versions.VersionDetailApi.as_view(), name="version"),
    path(
        HOOK + "versions/<str:number>/rollback/",
        versions.VersionRollbackApi.as_view(),
        name="rollback",
    ),
    path(HOOK + "keys/", keys.KeyListCreateApi.as_view(), name="keys"),
    path(HOOK + "keys/<str:key_id>/", keys.KeyDetailApi.as_view(), name="key"),
    path(HOOK + "secrets/", secrets.SecretListApi.as_view(), name="secrets"),
    path(HOOK + "secrets/<str:name>/", secrets.SecretDetailApi.as_view(), name="secret"),
    path(HOOK + "requests/", requests.RequestLogApi.as_view(), name="requests"),
    path(
        HOOK + "requests/<str:request_id>/",
        requests.RequestDetailApi.as_view(),
        name="request",
    ),
    path(
        HOOK + "requests/<str:request_id>/resend/",
        requests.RequestResendApi.as_view(),
        name="request-resend",
    ),
    path(HOOK + "rooms/", rooms.RoomListApi.as_view(), name="rooms"),
    path(HOOK + "rooms/<str:name>/", rooms.RoomDetailApi.as_view(), name="room"),
    path(HOOK + "tests/", tests.HookTestsApi.as_view(), name="tests"),
    path(HOOK + "tests/run/", tests.HookTestsRunApi.as_view(), name="tests-run"),
]
