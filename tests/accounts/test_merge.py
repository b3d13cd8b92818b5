"""Merging a visitor into an account moves everything it owned."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import models

from accounts.models import ApiToken, User
from accounts.services import MERGE_IGNORED, MERGED, api_token_create, visitor_merge
from hooks.models import Hook, Version
from hooks.services import hook_create


def test_it_knows_every_relation_to_users() -> None:
    # A new ForeignKey to User must be moved by visitor_merge (MERGED) or knowingly left
    # alone (MERGE_IGNORED); otherwise a visitor's things would vanish with it on sign-in.
    relations = {
        (
            f"{field.related_model._meta.app_label}.{field.related_model._meta.object_name}",
            field.field.name,
        )
        # include_hidden: relations with related_name="+" count too.
        for field in User._meta.get_fields(include_hidden=True)
        if isinstance(field, models.ManyToOneRel) and not field.related_model._meta.auto_created
    }

    assert ("hooks.Version", "author") in relations
    assert relations - MERGED - MERGE_IGNORED == set()


def test_it_moves_hooks_versions_and_tokens(alice: User, visitor: User) -> None:
    hook = hook_create(owner=visitor, name="made by a visitor")
    api_token, _ = api_token_create(user=visitor, name="curl")

    visitor_merge(visitor=visitor, into=alice)

    assert Hook.objects.get(pk=hook.pk).owner == alice
    assert Version.objects.get(hook=hook).author == alice
    assert ApiToken.objects.get(pk=api_token.pk).user == alice
    assert not User.objects.filter(pk=visitor.pk).exists()


def test_it_merges_only_visitors(alice: User, bob: User) -> None:
    with pytest.raises(ValueError):
        visitor_merge(visitor=bob, into=alice)


def test_it_does_not_merge_a_visitor_into_itself(visitor: User, db: Any) -> None:
    with pytest.raises(ValueError):
        visitor_merge(visitor=visitor, into=visitor)
