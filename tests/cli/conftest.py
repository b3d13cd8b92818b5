"""Fixtures of the `wr` tests: alice's API token, a HOME and a folder of her own, `wr` itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from accounts.models import User
from accounts.services import api_token_create
from tests.cli.helpers import Wr
from tests.servers import worker_settle


@pytest.fixture
def quiet_worker() -> Iterator[None]:
    """After each test, let the worker finish its queue (tests.servers.worker_settle)."""
    yield
    worker_settle()


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
