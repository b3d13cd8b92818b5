"""The responder's answer as the request log keeps it: what the producer got, bounded in size
and with the hook's secret values masked like the console (hooks.masking).

A responder that echoes a secret (a signature check that prints what it expected, say) must
not put it in the log; a responder that answers megabytes must not make every log row that big.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from hooks.masking import mask_value


def answer_record(
    *, status: int, headers: dict[str, str], body: Any, secrets: dict[str, str]
) -> dict[str, Any]:
    """`{"status", "headers", "body", "truncated"}` for Request.response.

    `body` stays a JSON value (a str for text bodies); past WR_LOG_RESPONSE_MAX_BYTES it is
    replaced by the start of its JSON text, as a string, with `truncated` true.
    """
    limit = settings.WR_LOG_RESPONSE_MAX_BYTES
    if secrets:
        headers = mask_value(headers, secrets)
        body = mask_value(body, secrets)
    kept_headers: dict[str, str] = {}
    size = 0
    for name, value in (headers or {}).items():
        size += len(str(name)) + len(str(value))
        if size > limit:
            break
        kept_headers[str(name)] = str(value)
    truncated = len(kept_headers) < len(headers or {})
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) > limit:
        body = encoded[:limit].decode("utf-8", "ignore")
        truncated = True
    return {"status": status, "headers": kept_headers, "body": body, "truncated": truncated}


def default_answer(request_id: str) -> dict[str, Any]:
    """The default responder's answer (no sandbox, nothing to mask or bound)."""
    return {"status": 202, "headers": {}, "body": {"id": request_id}, "truncated": False}
