"""What a stored request's `request.body` was taken as, in words, for its log entry.

The sandbox parses the body by its Content-Type (sandbox/runtime/wr_request.py, parse_body):
JSON, form fields, text, or nothing (`None`). `curl -d '{"n": 1}'` without
`-H 'Content-Type: application/json'` sends a form, so `request.body["n"]` is a KeyError: the
log entry says so rather than leaving a bare KeyError to puzzle over (docs/functions.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TakenAs:
    what: str  # "JSON", "form fields", ...
    hint: str  # "" unless the body looks like something else than it was taken as


def body_taken_as(content_type: str, body_text: str) -> TakenAs:
    media = content_type.partition(";")[0].strip().lower()
    looks_json = body_text.lstrip()[:1] in ("{", "[")
    if media == "application/json" or media.endswith("+json"):
        return TakenAs("JSON (request.body is the parsed value; None if it is not JSON)", "")
    if media == "application/x-www-form-urlencoded":
        hint = ""
        if looks_json:
            hint = (
                "This body looks like JSON but was sent as a form (Content-Type: "
                "application/x-www-form-urlencoded, what curl -d sends by default), so "
                "request.body is a dict with the whole text as one field name. Send it with "
                "-H 'Content-Type: application/json', or read request.raw_body."
            )
        return TakenAs("form fields (request.body is a dict of the fields)", hint)
    if media.startswith("text/"):
        return TakenAs("text (request.body is a str)", "")
    hint = ""
    if looks_json:
        hint = (
            "This body looks like JSON but came without Content-Type: application/json, so "
            "request.body is None. Send that header, or parse request.raw_body."
        )
    what = f"nothing ({content_type or 'no Content-Type'}): request.body is None, request.raw_body has the text"
    return TakenAs(what, hint)
