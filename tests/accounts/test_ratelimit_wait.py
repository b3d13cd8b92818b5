"""How a wait is said to people: in seconds under a minute, in whole minutes (rounded up) after."""

from __future__ import annotations

import pytest

from accounts.ratelimit import wait_text


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (1, "1 second"),
        (45, "45 seconds"),
        (60, "1 minute"),
        (61, "2 minutes"),
        (2765, "47 minutes"),
    ],
)
def test_a_wait_is_said_in_seconds_then_in_minutes(seconds: int, said: str) -> None:
    assert wait_text(seconds) == said
