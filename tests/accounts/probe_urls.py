"""The real URLs plus one probe route that reads a hook through hooks.selectors.

It stands for every management route (tests/accounts/test_access.py checks the real ones):
here a token of one user must not reach another user's hook.
"""

from __future__ import annotations

from django.urls import include, path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hooks.selectors import hook_get_for_user


class HookProbeApi(APIView):
    def get(self, request: Request, id: str) -> Response:
        hook = hook_get_for_user(user=request.user, hook_id=id)
        return Response({"id": str(hook.pk), "name": hook.name})


urlpatterns = [
    path("probe/hooks/<str:id>/", HookProbeApi.as_view()),
    path("", include("webreducer.urls")),
]
