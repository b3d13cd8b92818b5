"""The web sign-in flow: ask for a link, check your email, confirm (POST), sign out."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import rate_limited_response
from accounts.emails import email_delivery_hint
from accounts.forms import EmailForm
from accounts.models import MagicLink, User
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
# The confirm form's checkbox: "also move this browser's visitor hooks" (value "yes").
MERGE_FIELD = "merge_visitor"


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
                email=email,
                ip=client_ip(request),
                visitor=_session_visitor(request),
                user_agent=request.headers.get("User-Agent", ""),
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
    context = {"form": form, "delivery_hint": email_delivery_hint()}
    return render(request, "accounts/login.html", context, status=status)


def check_email_view(request: HttpRequest) -> HttpResponse:
    context = {
        "email": request.session.get(SESSION_EMAIL_KEY, ""),
        "minutes": settings.WR_MAGIC_LINK_MAX_AGE_SECONDS // 60,
        "delivery_hint": email_delivery_hint(),
    }
    return render(request, "accounts/check-email.html", context)


def _confirm_page(request: HttpRequest, link: MagicLink, token: str) -> HttpResponse:
    visitor = _session_visitor(request)
    asked_here = link.asked_by(visitor)
    context = {
        "link": link,
        "token": token,
        "asked_here": asked_here,
        # Offered, never ticked for them: this may be a victim opening an attacker's link.
        "offer_merge": visitor is not None and not asked_here,
        "visitor_hooks": visitor.hooks.count() if visitor is not None else 0,
        "merge_field": MERGE_FIELD,
    }
    return render(request, "accounts/confirm.html", context)


@require_http_methods(["GET", "POST"])
def confirm_view(request: HttpRequest, token: str) -> HttpResponse:
    """GET: who asked for the link, and a button. POST (CSRF-protected, like every form): sign in.

    The session's own visitor is merged when it asked for the link, or when the person ticks
    the box the page offers otherwise (accounts.services.magic_link_confirm_merges).
    """
    if request.method == "GET":
        # Only shows the button: link scanners in mail systems GET every link they see.
        try:
            link = magic_link_check(token=token)
        except MagicLinkRefused as exc:
            return render(request, "accounts/confirm.html", {"refusal": exc.message}, status=400)
        return _confirm_page(request, link, token)
    try:
        account = magic_link_confirm(
            token=token,
            ip=client_ip(request),
            visitor=_session_visitor(request),
            merge_visitor=request.POST.get(MERGE_FIELD) == "yes",
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
