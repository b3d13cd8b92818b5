"""The ASGI application: Django for HTTP (including the SSE stream /read/<key>/events),
Channels for WebSockets (hooks/routing.py)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webreducer.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from accounts.websocket import OwnerSocketAuth  # noqa: E402
from hooks.routing import owner_websocket_urlpatterns, public_websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(
            [
                # Public and CORS-open like GET /read/<key>: pages of any origin may subscribe,
                # the key in the URL is the credential.
                *public_websocket_urlpatterns,
                # An API token (no Origin needed), or the session cookie from pages of this
                # site only (Origin in ALLOWED_HOSTS): another site must not ride on a
                # signed-in browser's cookie (accounts/websocket.py).
                re_path(r"^ws/", OwnerSocketAuth(URLRouter(owner_websocket_urlpatterns))),
            ]
        ),
    }
)
