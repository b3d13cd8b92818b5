"""The `webreducer` module user code imports inside the sandbox: `from webreducer import Response`.

Everything public in `webreducer_helpers` (signature checks, JSON-schema validation) is
re-exported here when that module exists.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Response"]


class Response:
    """What a responder or query returns to set the status code and headers of its answer."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, body: Any = None, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        self.body = body
        self.status = status
        self.headers = {} if headers is None else headers

    def __repr__(self) -> str:
        return f"Response(status={self.status!r}, headers={self.headers!r}, body={self.body!r})"


def _reexport_helpers() -> None:
    try:
        helpers = importlib.import_module("webreducer_helpers")
    except ModuleNotFoundError as error:
        if error.name != "webreducer_helpers":
            raise
        return
    names = getattr(helpers, "__all__", None)
    if names is None:
        names = [name for name in vars(helpers) if not name.startswith("_")]
    for name in names:
        if name == "Response":
            continue
        globals()[name] = getattr(helpers, name)
        __all__.append(name)


_reexport_helpers()
