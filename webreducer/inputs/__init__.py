"""Bounded request input on both servers (docs/security.md).

Every request's head (path, query string, headers) is measured against the WR_MAX_… settings
and its body is read here, up to WR_MAX_REQUEST_BODY_BYTES and within WR_BODY_READ_SECONDS,
before Django or Channels sees it: Django's ASGI handler would otherwise spool any body whole
to disk before a view could say 413, and its WSGI request ignores a chunked body. A refusal
is a JSON error (400, 408, 413, 414 or 431) and the connection is closed; nothing reaches a
view, so nothing is stored or logged. `limits` holds the checks, `asgi` and `wsgi` apply them
on each server, and `limits.backstops()` the servers' own hard limits a little above them.
`busy` refuses early, with the view's own 429, a key whose hook this process just refused as
full (hooks/serving.py, "Early refusals").
"""
