"""Browser tests: Playwright's Python package driving Debian's Chromium against a real uvicorn
(HTTP and WebSockets) and a real Celery worker, on the test database and Redis.

Chromium is never downloaded: it must be /usr/bin/chromium (`apt-get install chromium`), and
without it these tests fail, saying so, rather than pass by skipping.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from accounts import ratelimit
from tests.servers import ROOT, asgi_server, celery_worker, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@dataclass
class Stack:
    url: str
    mail_dir: Path

    def emails(self) -> list[str]:
        return [p.read_text(errors="replace") for p in sorted(self.mail_dir.glob("*"))]

    def sign_in_link(self, email: str, timeout: float = 10) -> str:
        """The link of the newest sign-in email to `email` (the file backend writes one file
        per connection)."""
        pattern = re.compile(re.escape(self.url) + r"/accounts/login/link/[^/\s]+/")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for text in reversed(self.emails()):
                if f"To: {email}" in text and (match := pattern.search(text)):
                    return match.group(0)
            time.sleep(0.1)
        raise AssertionError(f"no sign-in email to {email} in {self.mail_dir}")


@pytest.fixture(scope="module")
def stack(django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("browser")
    mail_dir = logs / "mail"
    mail_dir.mkdir()
    port = free_port()
    env = {
        "SITE_ROOT": f"http://127.0.0.1:{port}",
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(mail_dir),
        # Every test is a new browser, so a new visitor, from the same address.
        "WR_VISITORS_PER_IP_PER_HOUR": "100000",
        "WR_MAGIC_LINKS_PER_IP_PER_HOUR": "100000",
        "WR_MAGIC_LINK_CONFIRMS_PER_IP_PER_HOUR": "100000",
    }
    with django_db_blocker.unblock(), ExitStack() as processes:
        url = processes.enter_context(asgi_server(logs, port=port, **env))
        processes.enter_context(celery_worker(logs, concurrency=2, name="browser", **env))
        yield Stack(url=url, mail_dir=mail_dir)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium "
            "(apt-get install -y chromium). Playwright's own browsers are never downloaded."
        )
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; Django's ORM calls made by the
    # tests in between are still plain synchronous code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class Console:
    """What a page logged: tests end by asserting there was no error."""

    problems: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> None:
        page.on(
            "console",
            lambda message: (
                self.problems.append(f"console.{message.type}: {message.text}")
                if message.type in ("error", "warning")
                else None
            ),
        )
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
def new_page(browser: Any, console: Console) -> Iterator[Any]:
    """A page in a fresh browser context (its own cookies: a new visitor), at a viewport size."""
    contexts: list[Any] = []

    def make(viewport: dict[str, int] = DESKTOP) -> Any:
        context = browser.new_context(viewport=viewport)
        context.set_default_timeout(20_000)
        contexts.append(context)
        page = context.new_page()
        console.watch(page)
        return page

    yield make
    for context in contexts:
        context.close()
    assert console.problems == [], console.problems


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    ratelimit.reset()
    yield


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
