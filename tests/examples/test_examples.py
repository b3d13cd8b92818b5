"""Each example's driver script runs against a real server and worker, and the resulting state
is what the example promises."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples import example
from hooks.models import Hook
from hooks.services import hook_create, secret_set
from tests.conftest import read_key, write_key
from tests.servers import ROOT, celery_worker, child_env, wsgi_server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[str]:
    with wsgi_server(tmp_path, workers=1) as url, celery_worker(tmp_path, concurrency=1):
        yield url


def run_example(slug: str, url: str, hook: Hook, *extra: str) -> dict[str, Any]:
    driver = ROOT / "examples" / slug / "drive.py"
    result = subprocess.run(
        [
            sys.executable,
            str(driver),
            f"{url}/write/{write_key(hook)}",
            f"{url}/read/{read_key(hook)}",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        check=True,
    )
    first, _, rest = result.stdout.partition("\n")
    if first.startswith("statuses "):
        return {"statuses": json.loads(first.removeprefix("statuses ")), "body": json.loads(rest)}
    return {"body": json.loads(result.stdout)}


def make(slug: str, alice: Any, **secrets: str) -> Hook:
    hook = hook_create(owner=alice, name=slug, code=example(slug).code)
    for name, value in secrets.items():
        secret_set(hook=hook, name=name, value=value)
    return hook


def test_it_runs_the_github_board(alice: Any, stack: str) -> None:
    hook = make("github_board", alice, GITHUB_SECRET="gh-secret")

    result = run_example("github_board", stack, hook, "gh-secret")

    assert result["statuses"] == [202, 202, 202, 202, 202, 401]
    board = result["body"]
    assert board["open"] == 2
    assert board["closed"] == 1
    assert board["labels"]["bug"] == {"open": 1, "closed": 1}
    assert board["labels"]["ui"] == {"open": 1, "closed": 0}
    assert hook.requests.filter(outcome="duplicate").count() == 1
    assert hook.requests.filter(outcome="rejected").count() == 1


def test_it_runs_the_stripe_ledger(alice: Any, stack: str) -> None:
    hook = make("stripe_ledger", alice, STRIPE_SECRET="whsec_test_secret")

    result = run_example("stripe_ledger", stack, hook, "whsec_test_secret")

    assert result["statuses"][-1] == 400  # forged signature
    assert result["statuses"][:-1] == [200] * 6
    assert result["body"] == {"mrr_cents": 4000, "mrr": "40.00", "subscriptions": 2}
    assert hook.requests.filter(outcome="duplicate").count() == 1


def test_it_runs_tictactoe(alice: Any, stack: str) -> None:
    hook = make("tictactoe", alice)

    result = run_example("tictactoe", stack, hook)

    assert result["statuses"][1] == 422
    game = result["body"]["match-1"]
    assert game["board"] == [["O", "O", "X"], ["X", "X", "O"], ["O", "X", None]]
    assert game["winner"] is None
    assert game["turn"] == "X"
    # The second match is a room of its own: its board knows nothing of the first.
    other = result["body"]["match-2"]
    assert other["board"] == [["X", None, None], [None, "O", None], [None, None, None]]
    assert other["moves"] == 2


def test_it_runs_the_iot_board(alice: Any, stack: str) -> None:
    hook = make("iot_last_seen", alice)

    result = run_example("iot_last_seen", stack, hook)["body"]

    assert result["fleet"] == ["boiler", "fridge", "porch"]
    assert set(result["everything"]) == {"boiler", "fridge", "porch"}
    assert result["everything"]["boiler"]["reading"] == {"temp": 61.5}
    assert list(result["changed"]) == ["fridge"]
    assert result["changed"]["fridge"]["reading"] == {"temp": 5.1}
    assert result["changed"]["fridge"]["reports"] == 2
    assert result["refused"] == 400


def test_it_runs_the_survey(alice: Any, stack: str) -> None:
    hook = make("survey", alice)

    result = run_example("survey", stack, hook)

    assert result["statuses"] == [200, 200, 200, 422]
    assert result["body"]["tally"] == {"love it": 2, "like it": 1, "meh": 0}
    assert result["body"]["comments"] == ["Great product"]
