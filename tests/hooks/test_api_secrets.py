"""Secrets (docs/api.md): set, list with a fingerprint, delete; the value is never shown again."""

from __future__ import annotations

import hashlib
import hmac
import logging

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.test import Client, override_settings

from hooks import crypto
from hooks.models import Secret
from hooks.services import hook_secrets
from tests.conftest import read_key, write_key
from tests.hooks.api import read, url, write

pytestmark = pytest.mark.usefixtures("eager_tasks")

VALUE = "sk_live_VALUE-that-must-never-leak-7f3a9"
SIGNS = """
import hashlib, hmac

def reducer(state, request, secrets):
    key = secrets["SIGNING_KEY"].encode()
    return {"signature": hmac.new(key, request.raw_body.encode(), hashlib.sha256).hexdigest()}
"""


@pytest.fixture
def api(alice, client_for):  # type: ignore[no-untyped-def]
    return client_for(alice)


def put_secret(api, hook, name: str, value: str):  # type: ignore[no-untyped-def]
    return api.put(url(hook, "secrets", name), {"value": value}, format="json")


def test_it_sets_lists_and_deletes_secrets_without_showing_values(api, make_hook) -> None:
    hook = make_hook()

    created = put_secret(api, hook, "SIGNING_KEY", VALUE)

    assert created.status_code == 200
    assert set(created.json()) == {"name", "fingerprint", "created_at", "updated_at"}
    assert created.json()["fingerprint"] == crypto.fingerprint(VALUE)
    listed = api.get(url(hook, "secrets"))
    assert [s["name"] for s in listed.json()] == ["SIGNING_KEY"]
    assert VALUE not in listed.content.decode()
    replaced = put_secret(api, hook, "SIGNING_KEY", VALUE + "2")
    assert replaced.json()["fingerprint"] != created.json()["fingerprint"]
    assert Secret.objects.filter(hook=hook).count() == 1

    assert api.delete(url(hook, "secrets", "SIGNING_KEY")).status_code == 204
    assert api.get(url(hook, "secrets")).json() == []
    assert api.delete(url(hook, "secrets", "SIGNING_KEY")).status_code == 404


def test_it_refuses_bad_names_big_values_and_too_many_secrets(api, make_hook, settings) -> None:
    hook = make_hook()
    settings.WR_MAX_SECRETS = 2

    for name in ("lower", "1ABC", "A-B"):
        response = put_secret(api, hook, name, "v")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_secret"
    big = "x" * (settings.WR_MAX_SECRET_BYTES + 1)
    response = put_secret(api, hook, "BIG", big)
    assert response.status_code == 400
    assert big not in response.content.decode()
    assert put_secret(api, hook, "A", "1").status_code == 200
    assert put_secret(api, hook, "B", "2").status_code == 200
    third = put_secret(api, hook, "C", "3")
    assert third.status_code == 400
    assert "at most 2" in third.json()["error"]["message"]
    assert put_secret(api, hook, "A", "replaced").status_code == 200  # replacing is not adding
    assert put_secret(api, hook, "A", 5).status_code == 400  # a string, not coerced


def test_a_secret_is_usable_in_user_code_and_never_shown(
    api, make_hook, client: Client, admin_client, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    hook = make_hook(SIGNS)
    put_secret(api, hook, "SIGNING_KEY", VALUE)

    write(client, write_key(hook), {"n": 1})

    expected = hmac.new(VALUE.encode(), b'{"n": 1}', hashlib.sha256).hexdigest()
    assert read(client, read_key(hook)).json() == {"signature": expected}
    seen = [
        api.get(url(hook)),
        api.get(url(hook, "secrets")),
        api.get(url(hook, "requests")),
        api.get(url(hook, "state")),
        api.post(url(hook, "dry-run"), {}, format="json"),
        put_secret(api, hook, "lower-case", VALUE),  # an error answer
        admin_client.get("/admin/hooks/secret/"),
        admin_client.get(f"/admin/hooks/secret/{Secret.objects.get().pk}/change/"),
        admin_client.get(f"/admin/hooks/hook/{hook.pk}/change/"),
    ]
    for response in seen:
        assert response.status_code in (200, 400), response
        assert VALUE not in response.content.decode()
    assert "SIGNING_KEY" in seen[6].content.decode()  # the admin lists it, by name only
    assert VALUE not in caplog.text
    for record in caplog.records:
        assert VALUE not in str(record.args)


def test_the_database_holds_ciphertext_only(api, make_hook) -> None:
    hook = make_hook()
    put_secret(api, hook, "SIGNING_KEY", VALUE)

    stored = bytes(Secret.objects.get().ciphertext)

    assert VALUE.encode() not in stored
    assert VALUE.encode().hex().encode() not in stored
    assert crypto.decrypt(stored) == VALUE


def test_rotation_keeps_every_secret_readable(api, make_hook, client: Client, settings) -> None:
    hook = make_hook(SIGNS)
    other = make_hook()
    put_secret(api, hook, "SIGNING_KEY", VALUE)
    put_secret(api, other, "A", "alpha")
    put_secret(api, other, "B", "beta")
    old_key = settings.WR_SECRETS_KEYS[0]
    new_key = Fernet.generate_key().decode()
    before = dict(Secret.objects.values_list("pk", "ciphertext"))

    with override_settings(WR_SECRETS_KEYS=[new_key, old_key]):
        call_command("rotatesecrets", stdout=open("/dev/null", "w"))  # noqa: SIM115

    for pk, ciphertext in Secret.objects.values_list("pk", "ciphertext"):
        assert bytes(ciphertext) != bytes(before[pk])
    # Only the new key from here on: everything still decrypts, and user code still gets it.
    with override_settings(WR_SECRETS_KEYS=[new_key]):
        assert hook_secrets(hook.pk) == {"SIGNING_KEY": VALUE}
        assert hook_secrets(other.pk) == {"A": "alpha", "B": "beta"}
        write(client, write_key(hook), {"n": 1})
        expected = hmac.new(VALUE.encode(), b'{"n": 1}', hashlib.sha256).hexdigest()
        assert read(client, read_key(hook)).json() == {"signature": expected}
        # The fingerprint is re-keyed too: setting the same value again shows the same one.
        listed = api.get(url(other, "secrets")).json()[0]["fingerprint"]
        assert put_secret(api, other, "A", "alpha").json()["fingerprint"] == listed
