"""WebSocket routes. webreducer/asgi.py wraps the owners' routes in session authentication and
an Origin check; the public ones are open to any origin, like GET /read/<key>."""

from __future__ import annotations

from django.urls import path

from hooks.consumers import LiveStateConsumer, OwnerFeedConsumer, TwoWaySocketConsumer

public_websocket_urlpatterns = [
    path("read/<str:token>/live", LiveStateConsumer.as_asgi()),
    path("write/<str:token>/live", TwoWaySocketConsumer.as_asgi()),
]

# Relative to /ws/.
owner_websocket_urlpatterns = [
    path("hooks/<uuid:hook_id>/", OwnerFeedConsumer.as_asgi()),
]
