from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from hooks.public import ReadApi, WriteApi

urlpatterns = [
    path("write/<str:token>", WriteApi.as_view(), name="write"),
    path("write/<str:token>/<path:path>", WriteApi.as_view(), name="write-path"),
    path("read/<str:token>", ReadApi.as_view(), name="read"),
    path("admin/", admin.site.urls),
    path("api/", include("accounts.api_urls")),
    # Ours first: the sign-in by emailed link shadows allauth's password pages.
    path("accounts/", include("accounts.urls")),
    path("accounts/", include("allauth.urls")),
]

if settings.WR_BENCH_VIEWS:
    from bench.views import bare_insert

    urlpatterns.append(path("bench/bare/<str:hook_id>", bare_insert))
