"""The admin filter oracle of issue 13 (finding 7), run for real by a staff superuser.

On main, `/admin/hooks/key/?token__startswith=<guess>` listed the key or not, and counting
rows recovered a masked write key in 1,332 requests; the same on token hashes and secret
ciphertext. Here every secret-bearing field is probed from every admin that can reach it,
directly and through relations, with the true next character of the secret and with wrong ones:
each test fails if what the operator sees (status and number of rows) ever depends on the
secret. The guard is webreducer/admin_site.py.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.apps import apps
from django.contrib.admin import AdminSite, ModelAdmin
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.auth.models import Group
from django.core import checks
from django.test import Client, RequestFactory
from django.utils import timezone

from accounts.models import ApiToken, MagicLink, User
from accounts.services import api_token_create, token_hash
from hooks import crypto
from hooks.admin import KeyAdmin
from hooks.models import Hook, Key, Request, Secret
from hooks.services import hook_create
from webreducer.admin_site import SECRET_FIELDS, SecretSafeAdminSite, site_secret_errors

RESULTS = re.compile(rb'<table id="result_list">.*?<tbody>(.*?)</tbody>', re.S)

# Fields whose names look like credentials but are not secret, and why.
NOT_SECRET = {
    "hooks.Hook.secrets_version": "a counter bumped when secrets change",
    "hooks.Request.key": "the key a request came through: a relation, followed to Key.token",
    "hooks.Connection.key": "the key a two-way socket came through: a relation, as above",
    "hooks.Request.idempotency_key": "chosen by the client to deduplicate, shown in full",
    "hooks.ReplayOutcome.idempotency_key": "the same, in a replay's outcome",
    "hooks.LedgerEntry.key": "an idempotency key, as above",
}
LOOKS_LIKE_A_CREDENTIAL = re.compile(
    r"token|hash|secret|cipher|pass|key|salt|nonce|otp|credential|session|signature", re.I
)


@dataclass
class World:
    alice: User
    hook: Hook
    secrets: dict[str, str]  # field label → the secret's stored value, as text


@pytest.fixture
def operator(db: Any) -> Client:
    ops = User.objects.create_superuser(username="ops", email="ops@example.com", password="x")
    client = Client()
    client.force_login(ops)
    return client


@pytest.fixture
def world(alice: User) -> World:
    alice.set_password("correct horse battery staple")
    alice.save()
    hook = hook_create(owner=alice, name="alice's hook")
    secret = Secret.objects.create(
        hook=hook,
        name="STRIPE_KEY",
        ciphertext=crypto.encrypt("sk_live_topsecret"),
        fingerprint=crypto.fingerprint("sk_live_topsecret"),
    )
    api_token, _ = api_token_create(user=alice, name="ci")
    link = MagicLink.objects.create(
        email=alice.email,
        token_hash=token_hash(secrets.token_urlsafe(32)),
        visitor=alice,  # so the link's admin can reach alice through a relation
        expires_at=timezone.now() + timedelta(hours=1),
    )
    key = hook.keys.get(kind=Key.Kind.WRITE)
    Request.objects.create(
        hook=hook, key=key, method="POST", received_at=hook.created_at, headers={}, query={}
    )
    group = Group.objects.create(name="customers")
    alice.groups.add(group)
    EmailAddress.objects.create(user=alice, email=alice.email, verified=True, primary=True)
    hook.keys.exclude(pk=key.pk).delete()  # one key: the count is the oracle's answer
    return World(
        alice=alice,
        hook=hook,
        secrets={
            "hooks.Key.token": key.token,
            "hooks.Secret.ciphertext": bytes(secret.ciphertext).decode("ascii"),
            "accounts.ApiToken.token_hash": api_token.token_hash,
            "accounts.MagicLink.token_hash": link.token_hash,
            "accounts.User.password": alice.password,
        },
    )


# (changelist, lookup path from that admin's model, the secret it reaches). Each is an attack
# path: directly on the field, or through a relation an operator could type into the URL.
PATHS = [
    ("hooks/key", "token", "hooks.Key.token"),
    ("hooks/key", "hook__keys__token", "hooks.Key.token"),
    ("hooks/hook", "keys__token", "hooks.Key.token"),
    ("hooks/hook", "secrets__ciphertext", "hooks.Secret.ciphertext"),
    ("hooks/hook", "owner__api_tokens__token_hash", "accounts.ApiToken.token_hash"),
    ("hooks/hook", "owner__password", "accounts.User.password"),
    ("hooks/request", "key__token", "hooks.Key.token"),
    ("hooks/request", "hook__keys__token", "hooks.Key.token"),
    ("hooks/secret", "ciphertext", "hooks.Secret.ciphertext"),
    ("hooks/secret", "hook__keys__token", "hooks.Key.token"),
    ("hooks/version", "author__password", "accounts.User.password"),
    ("hooks/version", "hook__secrets__ciphertext", "hooks.Secret.ciphertext"),
    ("accounts/user", "password", "accounts.User.password"),
    ("accounts/user", "api_tokens__token_hash", "accounts.ApiToken.token_hash"),
    ("accounts/user", "hooks__keys__token", "hooks.Key.token"),
    ("accounts/apitoken", "token_hash", "accounts.ApiToken.token_hash"),
    ("accounts/apitoken", "user__api_tokens__token_hash", "accounts.ApiToken.token_hash"),
    ("accounts/apitoken", "user__password", "accounts.User.password"),
    ("accounts/magiclink", "token_hash", "accounts.MagicLink.token_hash"),
    ("accounts/magiclink", "visitor__api_tokens__token_hash", "accounts.ApiToken.token_hash"),
    ("account/emailaddress", "user__password", "accounts.User.password"),
    ("account/emailaddress", "user__api_tokens__token_hash", "accounts.ApiToken.token_hash"),
    ("auth/group", "user__password", "accounts.User.password"),
    ("auth/group", "user__hooks__keys__token", "hooks.Key.token"),
]


def observe(operator: Client, url: str) -> tuple[int, int]:
    """What the oracle reads: the answer's status and how many rows it lists."""
    response = operator.get(url)
    results = RESULTS.search(response.content)
    return response.status_code, results.group(1).count(b"<tr") if results else 0


def wrong(char: str) -> str:
    return "0" if char != "0" else "1"


@pytest.mark.parametrize(("changelist", "path", "field"), PATHS)
def test_it_answers_the_same_whatever_the_guess(
    operator: Client, world: World, changelist: str, path: str, field: str
) -> None:
    secret = world.secrets[field]
    base = f"/admin/{changelist}/"
    assert observe(operator, base)[0] == 200
    # Each lookup with a guess that matches the secret and one that does not: prefixes (the
    # attack as run), substrings, patterns, ranges (a binary search) and equality.
    guesses = {
        "startswith": (secret[:1], wrong(secret[0])),
        "istartswith": (secret[:2], secret[0] + wrong(secret[1])),
        "contains": (secret[3:9], "~~~~"),
        "regex": ("^" + re.escape(secret[:3]), "^~"),
        "gte": (secret, "~"),
        "lt": ("~", secret),
        "exact": (secret, wrong(secret[0]) + secret[1:]),
    }
    for lookup, (right, bad) in guesses.items():
        hit = observe(operator, f"{base}?{path}__{lookup}={right}")
        miss = observe(operator, f"{base}?{path}__{lookup}={bad}")
        assert hit == miss, f"{base}?{path}__{lookup}= tells {right!r} from {bad!r}: {hit} {miss}"
        assert hit[0] == 400, f"{path}__{lookup} was not refused: {hit}"
    bare = observe(operator, f"{base}?{path}={secret}")
    assert bare[0] == 400


def test_it_runs_the_whole_prefix_attack_on_a_write_key_and_learns_nothing(
    operator: Client, world: World
) -> None:
    token = world.secrets["hooks.Key.token"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    answers = {
        char: observe(operator, f"/admin/hooks/key/?token__startswith={char}") for char in alphabet
    }

    assert len(set(answers.values())) == 1, answers
    assert answers[token[0]][0] == 400


def test_it_refuses_to_reference_a_key_by_its_token(operator: Client, world: World) -> None:
    token = world.secrets["hooks.Key.token"]

    response = operator.get("/admin/hooks/key/?_to_field=token&_popup=1")

    assert response.status_code == 400
    assert token.encode() not in response.content


def test_it_finds_nothing_by_searching_for_a_token(operator: Client, world: World) -> None:
    token = world.secrets["hooks.Key.token"]

    for changelist in ["hooks/key", "hooks/hook", "hooks/request"]:
        hit = observe(operator, f"/admin/{changelist}/?q={token[:8]}")
        miss = observe(operator, f"/admin/{changelist}/?q=zzzzzzzz")
        assert hit == miss == (200, 0), changelist


def test_it_still_filters_and_searches_ordinary_fields(operator: Client, world: World) -> None:
    assert observe(operator, "/admin/hooks/key/?kind__exact=write") == (200, 1)
    assert observe(operator, "/admin/hooks/key/?kind__exact=read") == (200, 0)
    assert observe(operator, f"/admin/hooks/hook/?q={world.hook.pk}") == (200, 1)
    assert observe(operator, "/admin/accounts/user/?q=alice") == (200, 1)
    assert observe(operator, "/admin/hooks/key/?o=2") == (200, 1)


# --- An admin configured to sort or search by a secret ----------------------------------


class CarelessKeyAdmin(KeyAdmin):
    list_display = ["kind", "token"]


def test_it_refuses_to_sort_a_list_by_a_secret(operator: Client, world: World) -> None:
    # No admin of ours sorts by a secret; one that did would leak it through `o=` (the order
    # of your own key among the others), so the site refuses it at run time too.
    site = SecretSafeAdminSite(name="careless")
    site.register(Key, CarelessKeyAdmin)
    ops = User.objects.get(username="ops")
    view = site.get_model_admin(Key).changelist_view

    for query in ["o=2", "o=-2", "o=1.2"]:
        request = RequestFactory().get(f"/admin/hooks/key/?{query}")
        request.user = ops
        with pytest.raises(DisallowedModelAdminLookup):
            view(request)


def test_the_system_check_refuses_an_admin_that_would_leak_a_secret() -> None:
    class LeakyHookAdmin(ModelAdmin):
        search_fields = ["keys__token"]
        list_filter = ["secrets__ciphertext"]
        ordering = ["owner__password"]

    site = AdminSite(name="leaky")  # Django's own site: it does not guard what it registers
    site.register(Hook, LeakyHookAdmin)

    messages = [e.msg for e in site_secret_errors(site) if e.id == "webreducer.E020"]

    assert any("not guarded" in m for m in messages), messages
    for option in [
        "search_fields 'keys__token'",
        "list_filter 'secrets__ciphertext'",
        "ordering 'owner__password'",
    ]:
        assert any(m.startswith(option) for m in messages), messages


def test_the_system_check_passes_for_the_admins_we_ship() -> None:
    errors = [e for e in checks.run_checks(tags=["admin"]) if e.id.startswith("webreducer.")]

    assert errors == []


def test_it_knows_every_field_that_looks_like_a_credential() -> None:
    # A new token, hash or key column must be classified here, or the admin would filter on it.
    unknown = []
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            label = f"{model._meta.label}.{field.name}"
            named_like_one = LOOKS_LIKE_A_CREDENTIAL.search(field.name)
            if named_like_one and label not in SECRET_FIELDS and label not in NOT_SECRET:
                unknown.append(label)

    assert unknown == [], (
        "Add these to webreducer.admin_site.SECRET_FIELDS, or to NOT_SECRET here with why: "
        f"{unknown}"
    )
    assert {ApiToken, MagicLink, Key, Secret} <= set(apps.get_models())
