"""The public read path: the live state through the hook's query (docs/pipeline.md, "Read
path"); hooks/live/ serves the same reads to websocket and SSE subscribers."""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError

from hooks.models import Key, State, Version
from hooks.public_calls import (
    Reply,
    database_unavailable,
    fair_share,
    invalid_status,
    live_session,
    param_room,
)
from hooks.response_headers import headers_filter, status_allowed
from hooks.services import hook_secrets

logger = logging.getLogger(__name__)


def state_read(*, key: Key, params: dict[str, list[str]]) -> Reply:
    """The live state through the hook's query, with the seq of the last applied request."""
    hook = key.hook
    version = hook.live_version
    assert version is not None
    room = param_room(params)
    if not version.defines("query"):
        state = _live_state(version, room)
        seq_header = {"X-WebReducer-Seq": str(state.seq)}
        return Reply(status=200, server_headers=seq_header, raw_json=state.value)
    # The slot before the state: a read refused for a busy hook costs the key lookup alone, not
    # a fetch of a state of up to a MiB that would be thrown away.
    with fair_share(key):
        state = _live_state(version, room)
        seq_header = {"X-WebReducer-Seq": str(state.seq)}
        result = query_run(key=key, state_json=state.value, params=params)
    if not result.ok:
        return Reply(status=500, body=query_error(result.error), server_headers=seq_header)
    if not status_allowed(result.value["status"]):
        invalid = invalid_status("query", result.value["status"])
        return Reply(status=500, body=query_error(invalid), server_headers=seq_header)
    allowed = headers_filter(result.value["headers"])
    if allowed.dropped:
        # No request log for reads: the server's log is where an operator can see it.
        logger.info("hook %s: query headers not sent: %s", hook.pk, ", ".join(allowed.dropped))
    return Reply(
        status=result.value["status"],
        body=result.value["body"],
        headers=allowed.headers,
        server_headers=seq_header,
    )


def _live_state(version: Version, room: str) -> State:
    """The room's state; a room nothing was written to yet reads as null at seq 0 (SPEC)."""
    try:
        state = State.objects.only("value", "seq").filter(version_id=version.pk, room=room).first()
    except DatabaseError as error:
        raise database_unavailable() from error
    return state if state is not None else State(value="null", seq=0)


def query_run(*, key: Key, state_json: str, params: dict[str, list[str]]) -> Any:
    hook = key.hook
    with live_session(key, hook_secrets(hook.pk, version=hook.secrets_version)) as sandbox:
        return sandbox.query(state_json, params)


def query_error(error: dict[str, Any] | None) -> dict[str, Any]:
    # Readers see what went wrong, not the traceback: that is for the owner's dry runs.
    kind = (error or {}).get("type", "Error")
    detail = (error or {}).get("message", "")
    message = (
        f"The hook's query raised {kind}: {detail}"
        if detail
        else f"The hook's query raised {kind}."
    )
    return {"error": {"code": "query_error", "message": message}}
