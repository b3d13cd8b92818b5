"""The ASGI application: Django for HTTP (including the SSE stream /read/<key>/events),
Channels for WebSockets (hooks/routing.py)."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webreducer.settings")

from webreducer.asgi_public import get_application

# The public endpoints run on threads of their own, not Django's one thread per process for
# sync views (webreducer/asgi_public.py).
django_asgi_app = get_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from accounts.websocket import OwnerSocketAuth  # noqa: E402
from hooks.routing import owner_websocket_urlpatterns, public_websocket_urlpatterns  # noqa: E402
from webreducer.inputs.asgi import InputLimits  # noqa: E402
from webreducer.origin_guards import WebsocketHostGuard  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Each route on its own origin's host only (webreducer/origins.py).
        "websocket": WebsocketHostGuard(
            URLRouter(
                [
                    # Public and CORS-open like GET /read/<key>: pages of any origin may
                    # subscribe, the key in the URL is the credential.
                    *public_websocket_urlpatterns,
                    # An API token (no Origin needed), or the session cookie from pages of the
                    # app's own origin (SITE_ROOT) only, checked on every connection whatever
                    # DEBUG says (accounts/websocket.py).
                    re_path(r"^ws/", OwnerSocketAuth(URLRouter(owner_websocket_urlpatterns))),
                ]
            )
        ),
    }
)

# Outermost: oversized, malformed or slow input is refused before Django or Channels read any
# of it (webreducer.inputs).
application = InputLimits(application)
