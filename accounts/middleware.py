from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, empty

from accounts.models import User
from accounts.services import user_touch


class LastSeenMiddleware:
    """Keeps User.last_seen_at fresh (at most one write an hour) so active visitors survive clean-up.

    It only looks at a user the request already loaded: the public write and read endpoints,
    which never need one, must not pay a session lookup for it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if isinstance(user, SimpleLazyObject):
            if user._wrapped is empty:  # type: ignore[attr-defined]
                return response
            user = user._wrapped  # type: ignore[attr-defined]
        if isinstance(user, User) and user.is_authenticated:
            touched = user.last_seen_at
            user_touch(user)
            if user.is_visitor and touched != user.last_seen_at and hasattr(request, "session"):
                # Re-send the session cookie so a visitor's browser keeps it while in use.
                request.session.modified = True
        return response
