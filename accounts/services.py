"""Account workflows: visitors, passwordless sign-in by emailed link, merging, API tokens, clean-up."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import secrets
from datetime import datetime, timedelta

from allauth.account.adapter import get_adapter
from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import login
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from accounts import ratelimit
from accounts.emails import email_send
from accounts.models import ApiToken, MagicLink, User
from accounts.ratelimit import RateLimited
from accounts.useragent import user_agent_summary
from hooks.models import Hook, Version
from hooks.services import history_delete, live_recheck
from webreducer.clientip import client_ip  # the one reader of X-Forwarded-For

logger = logging.getLogger(__name__)

__all__ = [
    "MagicLinkRefused",
    "RateLimited",
    "api_token_authenticate",
    "api_token_create",
    "api_token_revoke",
    "client_ip",
    "email_normalize",
    "magic_link_check",
    "magic_link_confirm",
    "magic_link_confirm_merges",
    "magic_link_request",
    "magic_links_delete_expired",
    "session_login",
    "user_touch",
    "visitor_create",
    "visitor_create_with_token",
    "visitor_for_request",
    "visitor_merge",
    "visitors_delete_stale",
]

TOKEN_PREFIX = "wr_"  # noqa: S105  (a marker, not a secret)
HOUR = 3600
# The backend login() records in the session: visitors and link sign-ins carry no password.
SESSION_BACKEND = "django.contrib.auth.backends.ModelBackend"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session_login(request: HttpRequest, user: User) -> None:
    # login() rotates the session key when the user changes, so a visitor's session id
    # cannot be reused to ride the account's session.
    login(request, user, backend=SESSION_BACKEND)


def user_touch(user: User) -> None:
    """Record that `user` was active, at most once per WR_LAST_SEEN_EVERY_SECONDS (one write)."""
    now = timezone.now()
    every = timedelta(seconds=settings.WR_LAST_SEEN_EVERY_SECONDS)
    if user.last_seen_at is not None and now - user.last_seen_at < every:
        return
    User.objects.filter(pk=user.pk).update(last_seen_at=now)
    user.last_seen_at = now


# --- Visitors -------------------------------------------------------------------------------


def visitor_create() -> User:
    visitor = User(username=f"visitor-{secrets.token_hex(8)}", is_visitor=True)
    visitor.set_unusable_password()
    visitor.save()
    return visitor


def _visitor_rate_limit(ip: str) -> None:
    # In development every browser of the developer's is a visitor from loopback: no limit.
    if settings.DEBUG and ratelimit.is_loopback(ip):
        return
    ratelimit.hit(
        "visitor",
        ip,
        limit=settings.WR_VISITORS_PER_IP_PER_HOUR,
        window=HOUR,
        message="Too many visitors were started from your network. Sign in, or try again in {wait}.",
    )


def visitor_for_request(request: HttpRequest) -> User:
    """The session's user; on a first visit, a new visitor logged into this browser session.

    Raises RateLimited when the client's IP has started too many visitors.
    """
    user = request.user
    if user.is_authenticated:
        assert isinstance(user, User)
        return user
    _visitor_rate_limit(client_ip(request))
    visitor = visitor_create()
    session_login(request, visitor)
    # The browser keeps the session as long as the visitor is kept (accounts.tasks.cleanup).
    request.session.set_expiry(settings.WR_VISITOR_MAX_AGE_DAYS * 24 * HOUR)
    return visitor


def visitor_create_with_token(*, ip: str) -> tuple[User, str]:
    """A visitor for API-only use, and a token for it (the curl quick start)."""
    _visitor_rate_limit(ip)
    with transaction.atomic():
        visitor = visitor_create()
        _, token = api_token_create(user=visitor, name="visitor quick start")
    return visitor, token


def visitor_merge(*, visitor: User, into: User) -> None:
    """Move everything `visitor` owns to `into`, then delete the visitor.

    Every relation to users is listed here or in MERGE_IGNORED (tests/accounts/test_merge.py
    fails when a new one appears), so nothing a visitor made is lost to the CASCADE.
    """
    if not visitor.is_visitor or visitor.pk == into.pk:
        raise ValueError("only a visitor can be merged, into another user")
    with transaction.atomic():
        Hook.objects.filter(owner=visitor).update(owner=into)
        Version.objects.filter(author=visitor).update(author=into)
        ApiToken.objects.filter(user=visitor).update(user=into)
        visitor.delete()
    logger.info("visitor %s merged into user %s", visitor.pk, into.pk)


# Relations to User that merging deliberately leaves alone: (app_label.Model, field name).
MERGE_IGNORED = {
    ("accounts.MagicLink", "visitor"),  # SET_NULL; the link is spent or expires anyway
    ("account.EmailAddress", "user"),  # visitors have no addresses
    ("admin.LogEntry", "user"),  # visitors cannot use the admin
}
MERGED = {
    ("hooks.Hook", "owner"),
    ("hooks.Version", "author"),
    ("accounts.ApiToken", "user"),
}


# --- Sign-in by emailed link ----------------------------------------------------------------


class MagicLinkRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def email_normalize(email: str) -> str:
    """The address in the form accounts are keyed by; raises ValidationError when malformed."""
    email = (email or "").strip()
    if not email or len(email) > 254:
        raise ValidationError("Enter a valid email address.", code="invalid")
    validate_email(email)
    return get_adapter().clean_email(email.lower())


def magic_link_url(token: str) -> str:
    # Never built from the request's Host header: a forged Host would mail the victim a link
    # to the attacker's server, and hand the attacker the token.
    return settings.SITE_ROOT.rstrip("/") + reverse("accounts:confirm", kwargs={"token": token})


def _ip_or_none(ip: str) -> str | None:
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return None


def magic_link_request(
    *, email: str, ip: str, visitor: User | None = None, user_agent: str = ""
) -> None:
    """Email a single-use sign-in link to `email`, saying which browser asked for it: counted
    against the rate limits here, created and sent by a Celery task once the request's
    transaction commits (magic_link_send), so the request never waits on the mail server.

    The same happens whether or not an account exists (it is created on first confirmed
    sign-in), so the answer cannot be used to find out who has an account. `visitor` (the
    requesting session's or token's) is recorded only to recognise the same visitor when the
    link is confirmed: asking for a link gives the asker nothing (magic_link_confirm).
    """
    from accounts.tasks import magic_link_send_task  # the task module imports this one

    email = email_normalize(email)
    ratelimit.hit(
        "link-ip",
        ip,
        limit=settings.WR_MAGIC_LINKS_PER_IP_PER_HOUR,
        window=HOUR,
        message="Too many sign-in links were asked for from your network.",
    )
    ratelimit.hit(
        "link-email",
        email,
        limit=settings.WR_MAGIC_LINKS_PER_EMAIL_PER_HOUR,
        window=HOUR,
        message="Too many sign-in links were sent to this address. Use the latest one, or try again in {wait}.",
    )
    # Only what the link records travels through the broker: its token is made in the task,
    # so no credential ever sits in the queue.
    request = {
        "email": email,
        "visitor_id": visitor.pk if visitor is not None and visitor.is_visitor else None,
        "requested_ip": _ip_or_none(ip),
        "requested_browser": user_agent_summary(user_agent),
    }
    transaction.on_commit(lambda: magic_link_send_task.delay(**request))


def magic_link_send(
    *, email: str, visitor_id: int | None, requested_ip: str | None, requested_browser: str
) -> None:
    """Create the link magic_link_request asked for and email it (from the Celery task)."""
    visitor = User.objects.filter(pk=visitor_id, is_visitor=True).first() if visitor_id else None
    token = secrets.token_urlsafe(32)
    link = MagicLink.objects.create(
        email=email,
        token_hash=token_hash(token),
        visitor=visitor,  # gone meanwhile (merged, deleted): nothing to recognise
        requested_ip=requested_ip,
        requested_browser=requested_browser,
        expires_at=timezone.now() + timedelta(seconds=settings.WR_MAGIC_LINK_MAX_AGE_SECONDS),
    )
    context = {
        "url": magic_link_url(token),
        "email": email,
        "link": link,
        "minutes": settings.WR_MAGIC_LINK_MAX_AGE_SECONDS // 60,
        "site_root": settings.SITE_ROOT,
    }
    try:
        email_send("magic-link", to=email, context=context)
    except Exception:
        # Answering differently would tell which addresses bounce; the operator sees the log.
        logger.exception("could not send a sign-in link")


def _link_refusal(link: MagicLink | None, now: datetime) -> MagicLinkRefused | None:
    if link is None:
        return MagicLinkRefused(
            "link_invalid", "This sign-in link is not valid. Ask for a new one."
        )
    if link.used_at is not None:
        return MagicLinkRefused(
            "link_used", "This sign-in link has already been used. Ask for a new one."
        )
    if link.expires_at <= now:
        return MagicLinkRefused("link_expired", "This sign-in link has expired. Ask for a new one.")
    return None


def _link_lookup(token: str) -> MagicLink | None:
    if not token or len(token) > 128:
        return None
    return MagicLink.objects.filter(token_hash=token_hash(token)).first()


def magic_link_check(*, token: str) -> MagicLink:
    """The link `token` names, without spending it; raises MagicLinkRefused when unusable."""
    link = _link_lookup(token)
    refusal = _link_refusal(link, timezone.now())
    if refusal is not None:
        raise refusal
    assert link is not None
    return link


def magic_link_confirm_merges(
    *, link: MagicLink, visitor: User | None, merge_visitor: bool = False
) -> bool:
    """Whether confirming `link` as `visitor` moves that visitor's hooks and tokens.

    Only the confirming visitor is ever merged: the visitor that asked for the link holds
    nothing the email proves, so its own things never ride along (finding 2 of issue 13: an
    attacker's token asked for a link to the victim's address, the victim confirmed it, the
    attacker's token became the victim). The confirming visitor moves when it is the one that
    asked (same browser or token), or when the person confirming says so (`merge_visitor`):
    someone opening a link another browser asked for may be a victim opening the attacker's
    link, and their hooks must not go to the attacker's account unasked.
    """
    if visitor is None or not visitor.is_visitor:
        return False
    return link.asked_by(visitor) or merge_visitor


def magic_link_confirm(
    *, token: str, ip: str, visitor: User | None = None, merge_visitor: bool = False
) -> User:
    """Spend the link, sign in (creating the account on first sign-in), maybe merge `visitor`.

    `visitor` is the confirming session's or token's visitor; it is merged as
    magic_link_confirm_merges says. The caller logs the returned user in.
    """
    ratelimit.hit(
        "confirm-ip",
        ip,
        limit=settings.WR_MAGIC_LINK_CONFIRMS_PER_IP_PER_HOUR,
        window=HOUR,
        message="Too many sign-in attempts from your network.",
    )
    now = timezone.now()
    with transaction.atomic():
        link = _link_lookup(token)
        refusal = _link_refusal(link, now)
        if refusal is not None:
            raise refusal
        assert link is not None
        # One conditional UPDATE: of two concurrent confirmations exactly one spends the link.
        spent = MagicLink.objects.filter(pk=link.pk, used_at__isnull=True).update(used_at=now)
        if not spent:
            raise MagicLinkRefused(
                "link_used", "This sign-in link has already been used. Ask for a new one."
            )
        account = account_get_or_create(email=link.email)
        if not account.is_active:
            raise MagicLinkRefused("account_disabled", "This account is disabled.")
        if visitor is not None and magic_link_confirm_merges(
            link=link, visitor=visitor, merge_visitor=merge_visitor
        ):
            # Re-read under the transaction: the visitor may have been merged meanwhile.
            merged = User.objects.filter(pk=visitor.pk, is_visitor=True).first()
            if merged is not None and merged.pk != account.pk:
                visitor_merge(visitor=merged, into=account)
        User.objects.filter(pk=account.pk).update(last_seen_at=now)
    return account


def account_get_or_create(*, email: str) -> User:
    """The account for `email` (an address already normalised), created when there is none."""
    account = User.objects.filter(email__iexact=email, is_visitor=False).first()
    if account is None:
        account = User(email=email)
        account.set_unusable_password()
        get_adapter().populate_username(None, account)  # type: ignore[arg-type]
        try:
            with transaction.atomic():
                account.save()
        except IntegrityError:
            # Another sign-in for the same new address won the race.
            account = User.objects.get(email__iexact=email, is_visitor=False)
    _email_address_verified(account, email)
    return account


def _email_address_verified(user: User, email: str) -> None:
    # Keep allauth's own record of the address in step: following the link proved it.
    address = EmailAddress.objects.filter(user=user, email__iexact=email).first()
    try:
        with transaction.atomic():
            if address is None:
                has_primary = EmailAddress.objects.filter(user=user, primary=True).exists()
                EmailAddress.objects.create(
                    user=user, email=email, verified=True, primary=not has_primary
                )
            elif not address.verified:
                address.verified = True
                address.save(update_fields=["verified"])
    except IntegrityError:
        logger.warning("email address %s is recorded for another user", user.pk)


# --- API tokens -----------------------------------------------------------------------------


def api_token_create(*, user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for `user`; the clear token is returned here once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    api_token = ApiToken.objects.create(
        user=user,
        name=name.strip() or "API token",
        prefix=token[: len(TOKEN_PREFIX) + 6],
        token_hash=token_hash(token),
    )
    return api_token, token


def api_token_revoke(*, api_token: ApiToken) -> None:
    if api_token.revoked_at is None:
        api_token.revoked_at = timezone.now()
        api_token.save(update_fields=["revoked_at"])


def api_token_authenticate(*, token: str) -> ApiToken | None:
    """The live token `token` is, with its user loaded; None for unknown or revoked tokens."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    api_token = (
        ApiToken.objects.select_related("user")
        .filter(token_hash=token_hash(token), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if api_token is None:
        return None
    now = timezone.now()
    every = timedelta(seconds=settings.WR_TOKEN_LAST_USED_EVERY_SECONDS)
    # A write per request would make every API call contend on this row.
    if api_token.last_used_at is None or now - api_token.last_used_at >= every:
        ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=now)
        api_token.last_used_at = now
    user_touch(api_token.user)
    return api_token


# --- Clean-up -------------------------------------------------------------------------------

CLEANUP_BATCH = 200


def visitors_delete_stale(*, now: datetime | None = None) -> int:
    """Delete visitors (their hooks go with them) untouched for WR_VISITOR_MAX_AGE_DAYS: each
    hook's history in bulk (hooks.services.history_delete), and its live connections close."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.WR_VISITOR_MAX_AGE_DAYS)
    stale = User.objects.filter(is_visitor=True).filter(
        Q(last_seen_at__lt=cutoff) | Q(last_seen_at__isnull=True, date_joined__lt=cutoff)
    )
    deleted = 0
    while True:
        # Batches keep each transaction (and the cascade over hooks and requests) short.
        ids = list(stale.values_list("pk", flat=True)[:CLEANUP_BATCH])
        if not ids:
            break
        with transaction.atomic():
            for hook_id in Hook.objects.filter(owner_id__in=ids).values_list("pk", flat=True):
                history_delete(hook_id=hook_id)
                live_recheck(hook_id=hook_id)
            stale.filter(pk__in=ids).delete()
        deleted += len(ids)
    if deleted:
        logger.info("deleted %d stale visitors", deleted)
    return deleted


def magic_links_delete_expired(*, now: datetime | None = None) -> int:
    # A day of grace keeps "already used" / "expired" answers for recent links.
    cutoff = (now or timezone.now()) - timedelta(days=1)
    deleted, _ = MagicLink.objects.filter(expires_at__lt=cutoff).delete()
    return deleted
