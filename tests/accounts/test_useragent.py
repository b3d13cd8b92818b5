"""The User-Agent summary shown to the person a sign-in link was sent to."""

from __future__ import annotations

import pytest

from accounts.useragent import NONE_GIVEN, UNKNOWN, user_agent_summary

FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0"
CHROME_LINUX = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
EDGE_WINDOWS = CHROME_LINUX.replace("X11; Linux x86_64", "Windows NT 10.0") + " Edg/120.0.2210.91"
SAFARI_IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1"
SAFARI_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15"
CHROME_ANDROID = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36"
HEADLESS = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.6778.85 Safari/537.36"


@pytest.mark.parametrize(
    ("user_agent", "summary"),
    [
        (FIREFOX_WINDOWS, "Firefox 121 on Windows"),
        (CHROME_LINUX, "Chrome 120 on Linux"),
        (EDGE_WINDOWS, "Edge 120 on Windows"),
        (SAFARI_IPHONE, "Safari 17 on iOS"),
        (SAFARI_MAC, "Safari 17 on macOS"),
        (CHROME_ANDROID, "Chrome 120 on Android"),
        (HEADLESS, "Headless Chrome 131 on Linux"),
        ("curl/8.5.0", "curl 8"),
        ("python-httpx/0.28.1", "Python httpx 0"),
        ("python-requests/2.32.3", "Python requests 2"),
        ("Mozilla/5.0 (X11; Linux x86_64)", "a browser on Linux"),
        ("", NONE_GIVEN),
        ("   ", NONE_GIVEN),
        ("SomethingElse/1.0", UNKNOWN),
    ],
)
def test_it_names_common_browsers_and_programs(user_agent: str, summary: str) -> None:
    assert user_agent_summary(user_agent) == summary


def test_it_never_repeats_what_the_header_says_beyond_its_fixed_words() -> None:
    lure = "curl/8 <a href=//evil.example>Your account is locked: click here</a> Windows"

    assert user_agent_summary(lure) == "curl 8 on Windows"
    assert user_agent_summary("Chrome/99999999 (Linux)") == "a browser on Linux"


def test_it_reads_only_the_start_of_a_huge_header() -> None:
    assert user_agent_summary("curl/8.0 " + "x" * 5_000_000 + " Windows") == "curl 8"
