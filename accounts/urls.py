from __future__ import annotations

from django.urls import path, re_path
from django.views.generic import RedirectView

from accounts import tokens_views, views

app_name = "accounts"

urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("login/check-email/", views.check_email_view, name="check-email"),
    path("login/link/<str:token>/", views.confirm_view, name="confirm"),
    path("logout/", views.logout_view, name="logout"),
    path("visitor/", views.visitor_view, name="visitor"),
    path("tokens/", tokens_views.tokens_view, name="tokens"),
    path("tokens/<int:token_id>/revoke/", tokens_views.token_revoke_view, name="token-revoke"),
    # allauth's password sign-up, password reset, code login and address management do not fit
    # sign-in by emailed link; they lead to the sign-in page instead (allauth.urls stays mounted
    # behind these for its internal reverse() calls).
    re_path(
        r"^(?:signup|password|email|confirm-email|reauthenticate|login/code|inactive)/",
        RedirectView.as_view(pattern_name="accounts:login", query_string=False),
    ),
]
