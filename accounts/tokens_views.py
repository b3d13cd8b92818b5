"""The API tokens page of a signed-in user: create (the token is shown once), list, revoke.

Visitors get tokens from POST /api/visitors/ (docs/accounts.md); the page is for accounts.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import User
from accounts.selectors import api_token_get_for_user, api_token_list
from accounts.services import api_token_create, api_token_revoke

NEW_TOKEN = "accounts:new-api-token"  # noqa: S105 (a session key, not a secret)


class TokenCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        label="Name",
        widget=forms.TextInput(attrs={"placeholder": "laptop CLI", "autocomplete": "off"}),
    )


def _account(request: HttpRequest) -> User | None:
    user = request.user
    return user if isinstance(user, User) and not user.is_visitor else None


@login_required
@require_http_methods(["GET", "POST"])
def tokens_view(request: HttpRequest) -> HttpResponse:
    user = _account(request)
    if user is None:
        return render(request, "accounts/tokens.html", {"visitor": True})
    form = TokenCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        _, token = api_token_create(user=user, name=form.cleaned_data["name"])
        # Post/redirect/get, so a reload does not make a second token: the clear token waits
        # in the (server-side) session for the one page that shows it, and leaves it there.
        request.session[NEW_TOKEN] = token
        return redirect("accounts:tokens")
    response = render(
        request,
        "accounts/tokens.html",
        {
            "form": form,
            "created": request.session.pop(NEW_TOKEN, None),
            "tokens": list(api_token_list(user=user)),
        },
    )
    # The one page that shows a new token: never cached.
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def token_revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
    user = _account(request)
    if user is None:
        return redirect("accounts:tokens")
    api_token = api_token_get_for_user(user=user, token_id=token_id)
    api_token_revoke(api_token=api_token)
    messages.success(request, f"Revoked “{api_token.name}”: it no longer works.")
    return redirect("accounts:tokens")
