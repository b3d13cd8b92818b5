"""The sign-in pages say where the link goes when no email is really sent (development)."""

from __future__ import annotations

from typing import Any

from django.test import Client


def test_with_the_console_backend_the_pages_point_at_the_make_run_terminal(
    db: Any, settings: Any
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

    login = Client().get("/accounts/login/").content.decode()
    check = Client().get("/accounts/login/check-email/").content.decode()

    for page in (login, check):
        assert "the link is printed in the terminal running make run." in page
    assert "spam" not in check


def test_with_a_real_backend_the_page_mentions_the_spam_folder(db: Any, settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"

    check = Client().get("/accounts/login/check-email/").content.decode()

    assert "Check your spam folder" in check
    assert 'id="delivery-hint"' not in check
