"""Access control for hooks, in one place: every management route fetches hooks through here."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from hooks.models import Hook


def hook_list_for_user(*, user: Any) -> QuerySet[Hook]:
    if user is None or not user.is_authenticated:
        return Hook.objects.none()
    return Hook.objects.filter(owner=user)


def hook_get_for_user(*, user: Any, hook_id: object, for_update: bool = False) -> Hook:
    """`user`'s hook `hook_id`, else Http404 (DRF answers 404).

    Another user's hook, a missing one and a malformed id all look the same: never 403, so
    hook ids cannot be probed. `for_update` locks the row (inside a transaction).
    """
    try:
        pk = hook_id if isinstance(hook_id, uuid.UUID) else uuid.UUID(str(hook_id))
    except (TypeError, ValueError):
        raise Http404("No such hook.") from None
    hooks = hook_list_for_user(user=user)
    if for_update:
        hooks = hooks.select_for_update()
    hook = hooks.filter(pk=pk).first()
    if hook is None:
        raise Http404("No such hook.")
    return hook
