"""The one helper that renders and sends emails from templates/emails/<name>-{subject,body}.*"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string


def email_render(name: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """(subject, text body, html body) of the email `name`."""
    # A newline in a subject would be a header injection; templates end with one anyway.
    subject = " ".join(render_to_string(f"emails/{name}-subject.txt", context).split())
    text = render_to_string(f"emails/{name}-body.txt", context)
    html = render_to_string(f"emails/{name}-body.html", context)
    return subject, text, html


def email_send(name: str, *, to: str, context: dict[str, Any]) -> None:
    subject, text, html = email_render(name, context)
    message = EmailMultiAlternatives(
        subject=subject, body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=[to]
    )
    message.attach_alternative(html, "text/html")
    message.send()


def email_delivery_hint() -> str:
    """Where a sign-in email goes when it is not really sent (development), or ""."""
    backend = settings.EMAIL_BACKEND
    if backend == "django.core.mail.backends.console.EmailBackend":
        return (
            "No email is sent in development: the link is printed in the terminal running make run."
        )
    if backend == "django.core.mail.backends.filebased.EmailBackend":
        return f"No email is sent: it is written to a file in {settings.EMAIL_FILE_PATH}."
    if backend == "django.core.mail.backends.locmem.EmailBackend":
        return "No email is sent: it is kept in memory (tests)."
    return ""
