"""Fixtures of the `wr` tests: alice's API token, a HOME and a folder of her own, `wr` itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from accounts.models import User
from accounts.services import api_token_create
from tests.cli.helpers import Wr
from webreducer.redis import get_redis


@pytest.fixture
def quiet_worker() -> Iterator[None]:
    """After each test, let the worker finish its queue: a reduce transaction running while
    the test database is flushed can deadlock with the TRUNCATE."""
    yield
    client = get_redis()
    assert client is not None
    deadline = time.monotonic() + 30
    while client.llen("celery") or client.hlen("unacked") or any(client.scan_iter("wr:wake:*")):
        assert time.monotonic() < deadline, "the Celery worker did not settle"
        time.sleep(0.1)
    time.sleep(0.3)


@pytest.fixture
def token(alice: User) -> str:
    return api_token_create(user=alice, name="cli tests")[1]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "scores"
    path.mkdir()
    return path


@pytest.fixture
def wr(base: str, token: str, home: Path, folder: Path) -> Wr:
    return Wr(base, token, home, folder)
