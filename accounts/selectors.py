from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from accounts.models import ApiToken, User


def api_token_list(*, user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True)


def api_token_get_for_user(*, user: User, token_id: object) -> ApiToken:
    """`user`'s token `token_id`, or 404: someone else's token is indistinguishable from none."""
    try:
        pk = int(str(token_id))
    except ValueError:
        raise Http404("No such token.") from None
    token = ApiToken.objects.filter(pk=pk, user=user).first()
    if token is None:
        raise Http404("No such token.")
    return token
