"""Strict JSON for what comes out of the sandbox.

Python's json accepts `NaN`, `Infinity` and `-Infinity`, and turns `1e999999` into an infinite
float: none of them is JSON, so a state made of them would be served as invalid JSON by the
read URL and break every reader of the request log. The child's own encoder refuses them, but
user code runs in the child's interpreter and can replace that encoder, so the parent parses
everything the child sends with these functions (sandbox/runner.py, sandbox/process.py).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

# An escaped U+0000 that is not itself an escaped backslash followed by "u0000".
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


# Called back only for the three constants and for numbers with a fraction or exponent.
_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_finite)


def loads(text: str) -> Any:
    """JSON as RFC 8259 defines it: raises ValueError on NaN, Infinity or a number that would
    overflow to infinity (and RecursionError on absurd nesting, as json.loads does)."""
    return _DECODER.decode(text)


def loads_storable(text: str, *, max_bytes: int) -> Any:
    """`loads`, and also refuses what the rest of the system cannot hold: more than `max_bytes`
    of UTF-8, U+0000 (PostgreSQL's text and jsonb refuse it) and lone surrogates (not UTF-8).
    These are the rules of the child's own encoder (runtime/wr_child.py `dump_json`), enforced
    again on this side."""
    try:
        size = len(text.encode("utf-8"))  # also refuses a raw lone surrogate
    except UnicodeEncodeError:
        raise ValueError("text that is not valid Unicode (a lone surrogate)") from None
    if size > max_bytes:
        raise ValueError(f"{size} bytes, over the limit of {max_bytes}")
    value = loads(text)  # refuses a raw U+0000 (a control character in a string, or no JSON)
    if "\\u" in text:  # the escaped forms
        if _NUL_ESCAPE.search(text):
            raise ValueError("a NUL character (\\u0000) cannot be stored")
        if _SURROGATE_ESCAPE.search(text) and not _encodes(value):
            raise ValueError("text that is not valid Unicode (a lone surrogate)")
    return value


def _encodes(value: Any) -> bool:
    """Whether every string in `value` (keys included) is valid Unicode."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True
