"""The ASGI application: Django for HTTP (including the SSE stream /read/<key>/events),
Channels for WebSockets (hooks/routing.py)."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webreducer.settings")

from webreducer.asgi_public import get_application

# The public endpoints run on threads of their own, not Django's one thread per process for
# sync views (webreducer/asgi_public.py).
django_asgi_app = get_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402

from hooks.routing import owner_websocket_urlpatterns, public_websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(
            [
                # Public and CORS-open like GET /read/<key>: pages of any origin may subscribe,
                # the key in the URL is the credential.
                *public_websocket_urlpatterns,
                # Authenticated by the session cookie, so only pages of this site (Origin in
                # ALLOWED_HOSTS): another site must not ride on a signed-in browser's cookie.
                re_path(
                    r"^ws/",
                    AllowedHostsOriginValidator(
                        AuthMiddlewareStack(URLRouter(owner_websocket_urlpatterns))
                    ),
                ),
            ]
        ),
    }
)
