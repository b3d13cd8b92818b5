"""When the database refuses what a batch writes: telling a poison request from a sick hook.

A batch can fold fine and still fail to commit because one request's outcome holds something
PostgreSQL will not store (a value it cannot represent, a constraint it violates, a size over
one of its limits). Such a refusal is a property of the data: the same rows are refused every
time, so the pipeline isolates the request that causes it (hooks.pipeline, docs/pipeline.md)
instead of retrying the batch forever. Anything else (a lost connection, a deadlock, a
statement timeout, the server shutting down) may pass, and is the hook's task's problem, not
one request's.
"""

from __future__ import annotations

from typing import Any

from django.db import DataError, IntegrityError, connection

# SQLSTATE classes that mean "these values cannot be stored": 22 data exception (a NUL in text,
# a bad escape in json, a number out of range), 23 integrity constraint violation, 54 program
# limit exceeded (a value or row over one of PostgreSQL's size limits).
REFUSING_CLASSES = frozenset({"22", "23", "54"})
MAX_REASON_CHARS = 500


def refusal_check(error: BaseException) -> bool:
    """Whether `error`, raised while writing a batch, is the database refusing its data."""
    if isinstance(error, DataError | IntegrityError):
        return True
    if isinstance(error, UnicodeError):  # a str psycopg cannot encode (a lone surrogate)
        return True
    sqlstate = getattr(error.__cause__, "sqlstate", None) or getattr(error, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in REFUSING_CLASSES


def constraints_check() -> None:
    """Check deferred constraints now (Django's foreign keys are deferred to COMMIT): a batch
    that breaks one fails here, inside the code that can isolate it, not at COMMIT."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def commit_error(error: BaseException) -> dict[str, Any]:
    """The error recorded on a request whose outcome the database refused. Only the first line
    of the database's message: its DETAIL lines quote the refused values, which are the user's
    data (and may hold what could not be stored in the first place)."""
    lines = str(error).strip().splitlines()
    reason = lines[0] if lines else ""
    reason = reason.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[:MAX_REASON_CHARS] + "…"
    return {
        "type": "CommitError",
        "message": (
            "The database refused to store this request's outcome "
            f"({type(error).__name__}: {reason}). It was not applied: the state is unchanged "
            "and its console output from the reducer was dropped."
        ),
        "traceback": "",
    }
