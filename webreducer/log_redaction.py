"""Keys out of the server's logs: a public URL's key is its credential (docs/security.md).

Django logs a server error with the request's path, uvicorn and gunicorn log every request
line: `/write/<key>…`, `/read/<key>…` and a two-way socket's `?read=<key>` would put every key that sees a 5xx (or any request)
into logs that operators ship and share. `redact()` keeps the first 4 characters of the key (enough
to tell keys apart in a log, nothing to guess from), and `KeyRedaction` applies it to a log
record's message and arguments. Wired into Django's LOGGING (settings), uvicorn's log config
(webreducer.asgiserver) and gunicorn's access log (gunicorn.conf.py).
"""

from __future__ import annotations

import logging
import re
from typing import Any

# A key is 43 URL-safe characters (hooks.models.new_key_token); anything of 16 or more after
# /write/ or /read/ is treated as one.
# The two-way socket takes a read key as `read=` in its query string too.
_KEY_IN_PATH = re.compile(r"(/(?:write|read)/|[?&]read=)([A-Za-z0-9_-]{4})[A-Za-z0-9_-]{12,}")


def redact(text: str) -> str:
    return _KEY_IN_PATH.sub(r"\1\2…", text)


def _redacted(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class KeyRedaction(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {name: _redacted(arg) for name, arg in record.args.items()}
        return True
