"""A short, safe summary of a User-Agent header: "Firefox 121 on Windows", "curl 8".

The summary is shown to the person a sign-in link was sent to (the email and the confirm page),
and the requester chooses the header. So it is built only from the fixed names below and the
digits of a major version: nothing the requester writes reaches the victim's inbox as text
("Click evil.example to secure your account" in a User-Agent stays out of the email).
"""

from __future__ import annotations

import re

# Longer headers are cut before matching: the summary never needs more, and a 5 MB header must
# not cost 5 MB of regex work.
MAX_SCANNED = 512
# The fixed answers when nothing is recognised.
UNKNOWN = "an unrecognised browser or program"
NONE_GIVEN = "a program that did not name itself"

# First match wins: Edge and Opera also say "Chrome/", Chrome also says "Safari/".
_PROGRAMS: list[tuple[str, str]] = [
    ("Edge", r"\bEdg(?:e|A|iOS)?/(\d{1,4})(?!\d)"),
    ("Opera", r"\bOPR/(\d{1,4})(?!\d)"),
    ("Samsung Internet", r"\bSamsungBrowser/(\d{1,4})(?!\d)"),
    ("Firefox", r"\b(?:Firefox|FxiOS)/(\d{1,4})(?!\d)"),
    ("Headless Chrome", r"\bHeadlessChrome/(\d{1,4})(?!\d)"),
    ("Chromium", r"\bChromium/(\d{1,4})(?!\d)"),
    ("Chrome", r"\b(?:Chrome|CriOS)/(\d{1,4})(?!\d)"),
    ("Safari", r"\bVersion/(\d{1,4})(?!\d)[.\d]* (?:Mobile/\S+ )?Safari/"),
    ("curl", r"^curl/(\d{1,4})(?!\d)"),
    ("Wget", r"^Wget/(\d{1,4})(?!\d)"),
    ("HTTPie", r"^HTTPie/(\d{1,4})(?!\d)"),
    ("Python requests", r"^python-requests/(\d{1,4})(?!\d)"),
    ("Python httpx", r"^python-httpx/(\d{1,4})(?!\d)"),
    ("Python urllib", r"^Python-urllib/(\d{1,4})(?!\d)"),
    ("Postman", r"^PostmanRuntime/(\d{1,4})(?!\d)"),
    ("Go", r"^Go-http-client/(\d{1,4})(?!\d)"),
    ("Node.js", r"^(?:node-fetch|node|undici)\b/?(\d{0,4})(?!\d)"),
]
_SYSTEMS: list[tuple[str, str]] = [
    ("iOS", r"\b(?:iPhone|iPad|iPod)\b"),
    ("Android", r"\bAndroid\b"),
    ("ChromeOS", r"\bCrOS\b"),
    ("Windows", r"\bWindows\b"),
    ("macOS", r"\bMac OS X\b|\bMacintosh\b"),
    ("Linux", r"\bLinux\b"),
]
_PROGRAM_PATTERNS = [(name, re.compile(pattern)) for name, pattern in _PROGRAMS]
_SYSTEM_PATTERNS = [(name, re.compile(pattern)) for name, pattern in _SYSTEMS]


def user_agent_summary(user_agent: str) -> str:
    """A few words naming the program and system in `user_agent`, from a fixed vocabulary."""
    text = (user_agent or "").strip()[:MAX_SCANNED]
    if not text:
        return NONE_GIVEN
    program = ""
    for name, pattern in _PROGRAM_PATTERNS:
        if match := pattern.search(text):
            version = match.group(1)
            program = f"{name} {version}" if version else name
            break
    system = next((name for name, pattern in _SYSTEM_PATTERNS if pattern.search(text)), "")
    if program and system:
        return f"{program} on {system}"
    if program:
        return program
    if system:
        return f"a browser on {system}"
    return UNKNOWN
