"""Shared fixtures: three people (alice owns things, bob is another user, a visitor) and hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from hooks.models import Hook, Key
from hooks.services import hook_create
from webreducer.celery import app as celery_app
from webreducer.redis import get_redis


@pytest.fixture(scope="session", autouse=True)
def _redis_fresh() -> None:
    """The tests' Redis database starts empty: an earlier run's rate buckets and wake-up flags
    are keyed by row ids that the new test database hands out again (a key's bucket of a run a
    minute ago refused this run's first writes 429). Only the tests' own database (REDIS_URL,
    `make test`'s TEST_REDIS_URL), never another."""
    client = get_redis()
    if client is not None:
        client.flushdb()


@pytest.fixture
def alice(db: Any) -> User:
    return User.objects.create_user(username="alice", email="alice@example.com")


@pytest.fixture
def bob(db: Any) -> User:
    return User.objects.create_user(username="bob", email="bob@example.com")


@pytest.fixture
def visitor(db: Any) -> User:
    return User.objects.create_user(username="visitor-1", is_visitor=True)


@pytest.fixture
def client_for() -> Callable[[User | None], APIClient]:
    def make(user: User | None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def make_hook(alice: User) -> Callable[..., Hook]:
    def make(code: str = "", *, owner: User | None = None, name: str = "test hook") -> Hook:
        return hook_create(owner=owner or alice, name=name, code=code)

    return make


def write_key(hook: Hook) -> str:
    return hook.keys.get(kind=Key.Kind.WRITE).token


def read_key(hook: Hook) -> str:
    return hook.keys.get(kind=Key.Kind.READ).token


@pytest.fixture
def mail_after_commit(transactional_db: Any, eager_tasks: Any) -> None:
    """Sign-in emails as they really go out: queued when the request's transaction commits
    (transactional tests: inside a test's transaction nothing ever commits), then sent by the
    Celery task, run in process so the test outbox catches it."""


@pytest.fixture
def eager_tasks() -> Any:
    """Run Celery tasks in process, as the embedded default does."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous
