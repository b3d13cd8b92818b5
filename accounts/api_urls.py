from __future__ import annotations

from django.urls import path

from accounts import apis

app_name = "accounts-api"

urlpatterns = [
    path("visitors/", apis.VisitorCreateApi.as_view(), name="visitors"),
    path("me/", apis.MeApi.as_view(), name="me"),
    path("tokens/", apis.TokenListCreateApi.as_view(), name="tokens"),
    path("tokens/<int:id>/", apis.TokenDetailApi.as_view(), name="token"),
    path("auth/magic-link/", apis.MagicLinkRequestApi.as_view(), name="magic-link"),
    path(
        "auth/magic-link/confirm/",
        apis.MagicLinkConfirmApi.as_view(),
        name="magic-link-confirm",
    ),
]
