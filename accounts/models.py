from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A person with an account, or an anonymous visitor bound to one browser session.

    Visitors own hooks like anyone else; signing in moves what they own to the account
    (accounts.services) and deletes the visitor.
    """

    email = models.EmailField(blank=True, default="")
    is_visitor = models.BooleanField(default=False, db_index=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["email"],
                condition=~models.Q(email=""),
                name="accounts_user_email_unique",
            )
        ]

    def __str__(self) -> str:
        return self.email or self.username


class ApiToken(models.Model):
    """A personal API token. Only its sha256 is stored: the token itself is shown once."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    # The first characters of the token, so people can tell their tokens apart in lists.
    prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class MagicLink(models.Model):
    """An emailed sign-in link: single use, short-lived, stored as the sha256 of its token."""

    email = models.EmailField()
    token_hash = models.CharField(max_length=64, unique=True)
    # The visitor whose browser (or token) asked for the link. Never merged on its own say-so:
    # only a confirmation made as this same visitor brings its hooks along (otherwise anyone
    # could ask for a link to a victim's address and receive the victim's account when the
    # victim signs in). Kept to recognise that case and to tell the person which browser asked.
    visitor = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who asked, shown in the email and on the confirm page: an address and a summary from a
    # fixed vocabulary (accounts.useragent), never the raw header.
    requested_ip = models.GenericIPAddressField(null=True, blank=True)
    requested_browser = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["expires_at"], name="accounts_magiclink_expires")]

    def __str__(self) -> str:
        return f"sign-in link for {self.email}"

    def asked_by(self, visitor: User | None) -> bool:
        """Whether `visitor` (the confirming session's or token's) is the one that asked."""
        return visitor is not None and visitor.is_visitor and self.visitor_id == visitor.pk
