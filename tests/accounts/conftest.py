from __future__ import annotations

from typing import Any

import pytest

from accounts import ratelimit


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Any:
    # The counters live in the real Redis, across tests and runs: every test starts at zero.
    ratelimit.reset()
    yield
    ratelimit.reset()
