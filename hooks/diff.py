"""A small structural diff of two JSON values, for the request log and dry runs.

Operations in the spirit of RFC 6902 (JSON Patch): {"op": "add"|"remove"|"replace",
"path": "/a/0/b", "value": …, "old": …}. Lists are compared by position.
"""

from __future__ import annotations

from typing import Any

MAX_OPS = 200


def _escape(part: object) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def json_diff(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    _diff(before, after, path, ops)
    return ops[:MAX_OPS]


def _diff(before: Any, after: Any, path: str, ops: list[dict[str, Any]]) -> None:
    if len(ops) >= MAX_OPS:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in before:
            if key not in after:
                ops.append({"op": "remove", "path": f"{path}/{_escape(key)}", "old": before[key]})
        for key, value in after.items():
            if key not in before:
                ops.append({"op": "add", "path": f"{path}/{_escape(key)}", "value": value})
            else:
                _diff(before[key], value, f"{path}/{_escape(key)}", ops)
    elif isinstance(before, list) and isinstance(after, list):
        for index in range(max(len(before), len(after))):
            child = f"{path}/{index}"
            if index >= len(after):
                ops.append({"op": "remove", "path": child, "old": before[index]})
            elif index >= len(before):
                ops.append({"op": "add", "path": child, "value": after[index]})
            else:
                _diff(before[index], after[index], child, ops)
    elif before != after or type(before) is not type(after):
        ops.append({"op": "replace", "path": path or "", "value": after, "old": before})
