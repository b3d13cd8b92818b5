"""Workflows over hooks: create, check code, gather what the sandbox needs."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import uuid

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from hooks import broadcast, crypto
from hooks.models import MAIN_ROOM, Hook, Key, Secret, State, Version
from sandbox import Limits, check_code

EXAMPLE_CODE = '''\
def reducer(state, request, secrets):
    """Count requests and add up the "number" field of JSON bodies."""
    state = state or {"count": 0, "number": 0}
    state["count"] += 1
    if isinstance(request.body, dict):
        state["number"] += request.body.get("number", 0)
    return state
'''


def code_check(code: str) -> list[str]:
    """The contract functions `code` defines; raises sandbox.CodeError when it cannot be saved."""
    return sorted(check_code(code, max_bytes=settings.WR_MAX_CODE_BYTES))


def hook_create(*, owner: User, name: str = "", code: str = "") -> Hook:
    """A hook with its code published as version 1, an empty state and one key of each kind."""
    functions = code_check(code)
    with transaction.atomic():
        hook = Hook.objects.create(owner=owner, name=name or "Untitled hook", draft_code=code)
        version = Version.objects.create(
            hook=hook,
            number=1,
            code=code,
            functions=functions,
            status=Version.Status.PUBLISHED,
            author=owner,
            published_at=timezone.now(),
        )
        State.objects.create(version=version, hook=hook)
        hook.live_version = version
        hook.save(update_fields=["live_version"])
        Key.objects.create(hook=hook, kind=Key.Kind.WRITE)
        Key.objects.create(hook=hook, kind=Key.Kind.READ)
    return hook


SANDBOX_LIMITS = frozenset(field.name for field in dataclasses.fields(Limits))


def hook_limits(hook: Hook) -> Limits:
    """The sandbox limits of this hook: settings, with the operator's overrides on Hook.limits
    (which also holds the endpoint limits: max_body_bytes, rate_per_second, rate_burst)."""
    return Limits.from_settings({k: v for k, v in hook.limits.items() if k in SANDBOX_LIMITS})


def hook_secrets(hook_id: uuid.UUID | str, *, version: int | None = None) -> dict[str, str]:
    """Decrypted secrets, only ever handed to the sandbox.

    With the hook's `secrets_version`, the encrypted rows come from a per-process cache (the
    version changes with every set and delete); they are decrypted on every call either way.
    """
    rows = _secret_rows(str(hook_id), version) if version is not None else _secret_query(hook_id)
    return {name: crypto.decrypt(ciphertext) for name, ciphertext in rows}


def _secret_query(hook_id: uuid.UUID | str) -> tuple[tuple[str, bytes], ...]:
    rows = Secret.objects.filter(hook_id=hook_id).values_list("name", "ciphertext")
    return tuple((name, bytes(ciphertext)) for name, ciphertext in rows)


@functools.lru_cache(maxsize=512)
def _secret_rows(hook_id: str, version: int) -> tuple[tuple[str, bytes], ...]:
    return _secret_query(hook_id)


def _secrets_changed(hook: Hook) -> None:
    Hook.objects.filter(pk=hook.pk).update(secrets_version=F("secrets_version") + 1)
    # Live hubs cache the hook between notifications: make them re-read it, so live `query`
    # runs get the new secrets at once.
    live_recheck(hook_id=hook.pk)


def draft_save(*, hook: Hook, code: str) -> list[str]:
    """Save the draft after checking it; the draft never affects live traffic."""
    functions = code_check(code)
    hook.draft_code = code
    hook.save(update_fields=["draft_code", "updated_at"])
    return functions


def hook_update(*, hook: Hook, name: str | None = None, description: str | None = None) -> Hook:
    fields = ["updated_at"]
    if name is not None:
        hook.name = name
        fields.append("name")
    if description is not None:
        hook.description = description
        fields.append("description")
    hook.save(update_fields=fields)
    return hook


def hook_archive(*, hook: Hook) -> None:
    """Reset the history and the state: every request, ledger entry and rebuild goes, and the
    read URL serves null at seq 0 from the moment this commits."""
    with transaction.atomic():
        history_delete(hook_id=hook.pk)
        Version.objects.filter(hook=hook, status=Version.Status.BUILDING).update(
            status=Version.Status.FAILED, replay_error="The history was archived."
        )
        # Every room goes: the named ones' rows, and the main room back to null at seq 0.
        State.objects.filter(hook=hook).exclude(room=MAIN_ROOM).delete()
        State.objects.filter(hook=hook).update(value="null", seq=0)
        hook_id = str(hook.pk)
        transaction.on_commit(lambda: broadcast.state_changed(hook_id=hook_id, seq=0, room=None))


def key_create(*, hook: Hook, kind: str, label: str = "") -> Key:
    return Key.objects.create(hook=hook, kind=kind, label=label)


class KeyRevoked(Exception):
    """A revoked key is revoked for good: it cannot be paused, resumed or revoked again."""


def key_set_paused(*, key: Key, paused: bool) -> Key:
    """Pause or resume `key` (a paused key answers 404 and stores nothing); KeyRevoked for a
    revoked one. The row is locked and read again, so a revoke running meanwhile wins."""
    with transaction.atomic():
        locked = Key.objects.select_for_update().get(pk=key.pk)
        if locked.revoked_at is not None:
            raise KeyRevoked("A revoked key cannot be paused or resumed.")
        locked.is_paused = paused
        locked.save(update_fields=["is_paused"])
        _key_changed(locked)
    key.is_paused, key.revoked_at = locked.is_paused, locked.revoked_at
    return key


def key_revoke(*, key: Key) -> Key:
    """Revoke `key` for good (it stays listed with revoked_at); KeyRevoked if it already is."""
    with transaction.atomic():
        locked = Key.objects.select_for_update().get(pk=key.pk)
        if locked.revoked_at is not None:
            raise KeyRevoked("This key is revoked already.")
        locked.revoked_at = timezone.now()
        locked.save(update_fields=["revoked_at"])
        _key_changed(locked)
    key.revoked_at = locked.revoked_at
    return key


def _key_changed(key: Key) -> None:
    live_recheck(hook_id=key.hook_id, key_id=key.pk)


def live_recheck(*, hook_id: uuid.UUID | str, key_id: int | None = None) -> None:
    """After commit, open websocket/SSE connections on the hook (or on one of its keys) re-check
    their key, and live hubs re-read the hook: its pause, limits and secrets (hooks.broadcast).
    Call from within the transaction that made the change."""
    hook, key = str(hook_id), key_id
    transaction.on_commit(lambda: broadcast.key_changed(hook_id=hook, key_id=key))


SECRET_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class SecretError(ValueError):
    pass


def secret_set(*, hook: Hook, name: str, value: str) -> Secret:
    """Create or replace a secret; the value is encrypted and never shown again."""
    if not SECRET_NAME.match(name) or len(name) > 64:
        raise SecretError("Secret names are UPPER_SNAKE_CASE: letters, digits and _, up to 64.")
    if len(value.encode()) > settings.WR_MAX_SECRET_BYTES:
        raise SecretError(f"A secret's value is at most {settings.WR_MAX_SECRET_BYTES} bytes.")
    with transaction.atomic():
        Hook.objects.select_for_update().get(pk=hook.pk)  # the count check below races otherwise
        existing = Secret.objects.filter(hook=hook, name=name).first()
        if existing is None and Secret.objects.filter(hook=hook).count() >= settings.WR_MAX_SECRETS:
            raise SecretError(f"A hook has at most {settings.WR_MAX_SECRETS} secrets.")
        secret = existing or Secret(hook=hook, name=name)
        secret.ciphertext = crypto.encrypt(value)
        secret.fingerprint = crypto.fingerprint(value)
        secret.save()
        _secrets_changed(hook)
    return secret


def secret_delete(*, hook: Hook, name: str) -> bool:
    with transaction.atomic():
        deleted, _ = Secret.objects.filter(hook=hook, name=name).delete()
        if deleted:
            _secrets_changed(hook)
    return bool(deleted)


def secrets_rotate() -> int:
    """Re-encrypt every secret under the first key of WR_SECRETS_KEYS.

    The fingerprint is keyed by that key too: re-keyed with it, setting the same value again
    later shows the same fingerprint. Each row is locked while it is rewritten, so a value set
    meanwhile is not overwritten with the old one.
    """
    count = 0
    for pk in list(Secret.objects.values_list("pk", flat=True)):
        with transaction.atomic():
            secret = Secret.objects.select_for_update().filter(pk=pk).first()
            if secret is None:
                continue
            value = crypto.decrypt(secret.ciphertext)
            secret.ciphertext = crypto.encrypt(value)
            secret.fingerprint = crypto.fingerprint(value)
            secret.save(update_fields=["ciphertext", "fingerprint"])
        count += 1
    return count


def hook_delete(*, hook: Hook) -> None:
    """Remove the hook and everything it owns, table by table in bulk (Django's cascade would
    load every request into memory first), then close its live connections."""
    with transaction.atomic():
        history_delete(hook_id=hook.pk)
        Hook.objects.filter(pk=hook.pk).update(live_version=None)
        Hook.objects.filter(pk=hook.pk).delete()
        live_recheck(hook_id=hook.pk)


def history_delete(*, hook_id: uuid.UUID | str) -> None:
    """Delete the hook's history: its requests, ledger entries and replay outcomes, in bulk.
    Call inside the transaction that archives or deletes the hook (hook_archive, hook_delete,
    accounts.services.visitors_delete_stale).

    The hook's state locks come first, before any row a batch writes: a worker folding this
    hook holds its state and then updates its requests, so taking the requests (or the hook
    row, which a publish's switch updates under the state locks) first deadlocked with it."""
    from hooks.models import LedgerEntry, ReplayOutcome, Request

    states_lock(hook_id=hook_id)
    ReplayOutcome.objects.filter(version__hook_id=hook_id).delete()
    LedgerEntry.objects.filter(version__hook_id=hook_id).delete()
    with connection.cursor() as cursor:
        # One statement: the ORM's delete (and a cascade from the hook or its owner) would
        # fetch every row first, to null duplicate_of and resent_from.
        cursor.execute(f"DELETE FROM {Request._meta.db_table} WHERE hook_id = %s", [str(hook_id)])  # noqa: S608


def states_lock(*, hook_id: uuid.UUID | str) -> None:
    """Lock every State row of the hook, in the order batches take them (hooks.replay: a
    rebuilding version's state, then the live one), waiting for batches in flight. Call first
    in a transaction that then rewrites or deletes the hook's requests, ledger or states: a
    batch holds its state lock while it writes those, so any other order can deadlock."""
    live_id = Hook.objects.filter(pk=hook_id).values_list("live_version_id", flat=True).first()
    states = State.objects.select_for_update().filter(hook_id=hook_id)
    if live_id is None:
        list(states.order_by("version_id", "id").values_list("pk", flat=True))
        return
    others = states.exclude(version_id=live_id).order_by("version_id", "id")
    list(others.values_list("pk", flat=True))
    list(states.filter(version_id=live_id).order_by("id").values_list("pk", flat=True))


def hooks_set_paused(*, hook_ids: list[uuid.UUID], paused: bool) -> int:
    """Pause or unpause hooks (operators): their keys answer 404 at once, live connections
    close."""
    with transaction.atomic():
        count = Hook.objects.filter(pk__in=hook_ids).update(is_paused=paused)
        for hook_id in hook_ids:
            live_recheck(hook_id=hook_id)
    return count


def keys_update(*, keys: list[Key], paused: bool | None = None, revoke: bool = False) -> None:
    """Pause, resume or revoke several keys at once (operators)."""
    for key in keys:
        with contextlib.suppress(KeyRevoked):  # a revoked key is left as it is
            if revoke:
                key_revoke(key=key)
            elif paused is not None:
                key_set_paused(key=key, paused=paused)
