"""The routes under ASGI: the public write and read views on threads of their own
(webreducer.asgi_public), then every route of webreducer.urls (the first match wins)."""

from __future__ import annotations

from django.urls import path

from hooks.views import public
from webreducer.asgi_public import on_public_threads
from webreducer.urls import urlpatterns as wsgi_urlpatterns

write = on_public_threads(public.write)
read = on_public_threads(public.read)

urlpatterns = [
    path("write/<str:token>", write, name="write"),
    path("write/<str:token>/<path:path>", write, name="write-path"),
    path("read/<str:token>", read, name="read"),
    *wsgi_urlpatterns,
]
