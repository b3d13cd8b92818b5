"""The security tests attack the real stack: Chromium comes from the browser tests' fixture."""

from __future__ import annotations

from tests.browser.conftest import browser  # noqa: F401 (Debian's Chromium, never downloaded)
