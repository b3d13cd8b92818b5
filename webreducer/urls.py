from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from hooks.live.sse import live_events
from hooks.views import public

urlpatterns = [
    path("write/<str:token>", public.write, name="write"),
    path("write/<str:token>/<path:path>", public.write, name="write-path"),
    path("read/<str:token>/events", live_events, name="read-events"),
    path("read/<str:token>", public.read, name="read"),
    path("admin/", admin.site.urls),
    path("api/", include("accounts.api_urls")),
    path("api/", include("hooks.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # Ours first: the sign-in by emailed link shadows allauth's password pages.
    path("accounts/", include("accounts.urls")),
    path("accounts/", include("allauth.urls")),
]

if settings.WR_BENCH_VIEWS:
    from bench.views import bare_insert

    urlpatterns.append(path("bench/bare/<str:hook_id>", bare_insert))

# The web UI (pages, the docs page) last: its routes are the catch-all of the site.
urlpatterns.append(path("", include("hooks.urls")))

# DEBUG off: the same 404 as the middleware gives (webreducer/error_pages.py).
handler404 = "webreducer.error_pages.not_found"
