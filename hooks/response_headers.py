"""Which response headers and statuses a hook's `responder` and `query` may set.

An allow-list, not a deny-list: a header a browser, proxy or server acts on (cookies, HSTS, CSP,
Clear-Site-Data, CORS credentials, framing, nginx's X-Accel-Redirect, a new one next year) must
never be the tenant's to set (issue 13, finding 6). The table with the reasons is in
docs/functions.md, "Response headers"; keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Content metadata and caching that act on this response only.
ALLOWED = frozenset(
    {
        "cache-control",
        "content-disposition",
        "content-language",
        "content-type",
        "etag",
        "expires",
        "last-modified",
        "location",
        "retry-after",
        "vary",
        "www-authenticate",
    }
)

# `X-…` names are the tenant's own, except these, which servers, proxies and browsers act on.
DENIED_X_PREFIXES = (
    "x-webreducer-",  # ours: X-WebReducer-Seq must be the server's word
    "x-accel-",  # nginx: X-Accel-Redirect serves any internal location or file
    "x-sendfile",  # Apache/lighttpd: serve a file from the server's disk
    "x-lighttpd-",
    "x-litespeed-",
    "x-forwarded-",  # the proxies'
)
DENIED_X = frozenset(
    {
        "x-content-security-policy",  # legacy CSP names
        "x-content-type-options",
        "x-dns-prefetch-control",
        "x-download-options",
        "x-frame-options",
        "x-permitted-cross-domain-policies",
        "x-real-ip",
        "x-ua-compatible",
        "x-webkit-csp",
        "x-xss-protection",
    }
)

# Statuses a hook may answer with. 1xx are interim responses: a server sends the final answer
# after them, which a browser then takes from the body the hook chose (finding 5).
MIN_STATUS, MAX_STATUS = 200, 599


@dataclass
class Filtered:
    headers: dict[str, str]
    dropped: list[str] = field(default_factory=list)

    def note(self) -> str:
        """A line for the request's console, so the owner sees why a header is missing."""
        if not self.dropped:
            return ""
        names = ", ".join(self.dropped)
        return (
            f"[webreducer] response header(s) not sent: {names} (only the headers listed in "
            "the docs, 'Response headers', may be set by a hook)\n"
        )


def header_allowed(name: str) -> bool:
    lower = name.lower()
    if lower in ALLOWED:
        return True
    return (
        lower.startswith("x-") and lower not in DENIED_X and not lower.startswith(DENIED_X_PREFIXES)
    )


def headers_filter(headers: dict[str, str]) -> Filtered:
    kept: dict[str, str] = {}
    dropped: list[str] = []
    for name, value in headers.items():
        if header_allowed(name):
            kept[name] = value
        else:
            dropped.append(name)
    return Filtered(kept, dropped)


def status_allowed(status: object) -> bool:
    return type(status) is int and MIN_STATUS <= status <= MAX_STATUS
