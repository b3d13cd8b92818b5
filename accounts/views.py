"""The web sign-in flow: ask for a link, check your email, confirm (POST), sign out."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import rate_limited_response
from accounts.forms import EmailForm
from accounts.models import User
from accounts.ratelimit import RateLimited
from accounts.services import (
    MagicLinkRefused,
    client_ip,
    magic_link_check,
    magic_link_confirm,
    magic_link_request,
    session_login,
    visitor_for_request,
)

SESSION_EMAIL_KEY = "accounts_magic_link_email"


def _session_visitor(request: HttpRequest) -> User | None:
    user = request.user
    return user if isinstance(user, User) and user.is_visitor else None


def _next_url(request: HttpRequest) -> str:
    url = request.GET.get("next", "")
    if url and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return url
    return settings.LOGIN_REDIRECT_URL


@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    form = EmailForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        try:
            magic_link_request(
                email=email, ip=client_ip(request), visitor=_session_visitor(request)
            )
        except RateLimited as exc:
            response = render(
                request,
                "accounts/login.html",
                {"form": form, "rate_limited": exc.message},
                status=429,
            )
            response["Retry-After"] = str(exc.retry_after)
            return response
        request.session[SESSION_EMAIL_KEY] = email
        return redirect("accounts:check-email")
    status = 400 if form.errors else 200
    return render(request, "accounts/login.html", {"form": form}, status=status)


def check_email_view(request: HttpRequest) -> HttpResponse:
    context = {
        "email": request.session.get(SESSION_EMAIL_KEY, ""),
        "minutes": settings.WR_MAGIC_LINK_MAX_AGE_SECONDS // 60,
    }
    return render(request, "accounts/check-email.html", context)


@require_http_methods(["GET", "POST"])
def confirm_view(request: HttpRequest, token: str) -> HttpResponse:
    if request.method == "GET":
        # Only shows the button: link scanners in mail systems GET every link they see.
        try:
            link = magic_link_check(token=token)
        except MagicLinkRefused as exc:
            return render(request, "accounts/confirm.html", {"refusal": exc.message}, status=400)
        return render(request, "accounts/confirm.html", {"link": link, "token": token})
    try:
        account = magic_link_confirm(
            token=token, ip=client_ip(request), visitor=_session_visitor(request)
        )
    except MagicLinkRefused as exc:
        return render(request, "accounts/confirm.html", {"refusal": exc.message}, status=400)
    except RateLimited as exc:
        return rate_limited_response(request, exc)
    session_login(request, account)
    request.session.pop(SESSION_EMAIL_KEY, None)
    return redirect(settings.LOGIN_REDIRECT_URL)


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("/")


def visitor_view(request: HttpRequest) -> HttpResponse:
    """Start (or keep) this browser's visitor, then go on: the "try it without signing up" link."""
    try:
        visitor_for_request(request)
    except RateLimited as exc:
        return rate_limited_response(request, exc)
    return redirect(_next_url(request))
