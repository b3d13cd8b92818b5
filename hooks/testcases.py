"""A hook's test cases: each a sequence of requests and what should come of them (the
responder's status and body, the state after a step or after the whole case).

`tests_validate` checks a document against the limits (docs/functions.md "Test cases");
`tests_run` runs cases in the sandbox the way production would — the responder first (a status
>= 400 rejects the request), then idempotency and the reducer for accepted ones — from a null
state and a fresh sandbox child per case, and stores nothing. Steps are routed like writes
(the code's `room`, else `?room=`): each room has its own state and seq within a case. The run's total time is bounded
(WR_MAX_TEST_RUN_SECONDS) on top of each call's own limits, and so is the size of its report.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from hooks.diff import json_diff
from hooks.fold import fold, fold_needs_sandbox, ledger_key, request_payload
from hooks.masking import mask, mask_error, mask_value
from hooks.models import MAIN_ROOM, Hook, HookTests, Request
from hooks.rooms import RoomRefused, name_error, param_room, stored_room
from hooks.services import code_check, hook_limits, hook_secrets
from sandbox import session

CASE_KEYS = {"name", "requests", "expect"}
STEP_KEYS = {"method", "path", "headers", "query", "body", "raw_body", "content_type", "expect"}
STEP_EXPECT_KEYS = {"status", "body", "state"}
MAX_NAME = 200
MAX_METHOD = 16
MAX_PATH = 2000
# The report of a run: at most this many failures per case, each expected/actual value cut to
# VALUE_BYTES, and REPORT_BYTES of values in all (a hostile case must not make a huge answer).
MAX_FAILURES = 20
VALUE_BYTES = 16 * 1024
REPORT_BYTES = 2 * 1024 * 1024


class TestsInvalid(ValueError):
    """A test document that breaks a rule; `fields` names each offending field."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items()))
        self.fields = fields


def same(expected: Any, actual: Any) -> bool:
    """JSON equality: true is not 1 (Python's == says it is); 1 and 1.0 are one number."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(
            same(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(
            same(a, b) for a, b in zip(expected, actual, strict=True)
        )
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return expected == actual
    return type(expected) is type(actual) and expected == actual


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def tests_validate(document: Any, *, cases_only: bool = False) -> dict[str, Any]:
    """`{"cases": [...], "required": bool}` checked against the limits; raises TestsInvalid.

    With `cases_only`, `document` is the list of cases itself (the run endpoint's `cases`)."""
    errors: dict[str, list[str]] = {}

    def bad(where: str, message: str) -> None:
        errors.setdefault(where, []).append(message)

    if cases_only:
        document = {"cases": document}
    if not isinstance(document, dict):
        raise TestsInvalid({"": ['Send {"cases": [...], "required": false}.']})
    unknown = set(document) - {"cases", "required"}
    for name in sorted(unknown):
        bad(name, "Unknown field.")
    cases = document.get("cases")
    required = document.get("required", False)
    if not isinstance(required, bool):
        bad("required", "Must be true or false.")
    if not isinstance(cases, list):
        bad("cases", "Must be a list of cases.")
        raise TestsInvalid(errors)
    if len(cases) > settings.WR_MAX_TEST_CASES:
        bad("cases", f"At most {settings.WR_MAX_TEST_CASES} cases.")
        raise TestsInvalid(errors)
    total = 0
    for i, case in enumerate(cases):
        where = f"cases[{i}]"
        if not isinstance(case, dict):
            bad(where, "Must be an object with name and requests.")
            continue
        for name in sorted(set(case) - CASE_KEYS):
            bad(f"{where}.{name}", "Unknown field.")
        name = case.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            bad(f"{where}.name", f"A non-empty string of up to {MAX_NAME} characters.")
        expect = case.get("expect", {})
        if not isinstance(expect, dict) or set(expect) - {"state"}:
            bad(f"{where}.expect", 'An object with an optional "state".')
        steps = case.get("requests")
        if not isinstance(steps, list) or not steps:
            bad(f"{where}.requests", "A non-empty list of requests.")
            continue
        total += len(steps)
        if total > settings.WR_MAX_TEST_REQUESTS:
            bad(where + ".requests", f"At most {settings.WR_MAX_TEST_REQUESTS} requests in all.")
            raise TestsInvalid(errors)
        for j, step in enumerate(steps):
            _step_check(step, f"{where}.requests[{j}]", bad)
    if errors:
        raise TestsInvalid(errors)
    return {"cases": cases, "required": required}


def _step_check(step: Any, where: str, bad: Any) -> None:
    if not isinstance(step, dict):
        bad(where, "Must be an object (method, path, headers, query, body, expect).")
        return
    for name in sorted(set(step) - STEP_KEYS):
        bad(f"{where}.{name}", "Unknown field.")
    method = step.get("method", "POST")
    if not isinstance(method, str) or not method.isalpha() or len(method) > MAX_METHOD:
        bad(f"{where}.method", f"An HTTP method: letters only, up to {MAX_METHOD}.")
    path = step.get("path", "")
    if not isinstance(path, str) or len(path) > MAX_PATH:
        bad(f"{where}.path", f"A string of up to {MAX_PATH} characters.")
    headers = step.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        bad(f"{where}.headers", "An object of header names to string values.")
    query = step.get("query", {})
    if not isinstance(query, dict) or not all(
        isinstance(k, str)
        and (isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)))
        for k, v in query.items()
    ):
        bad(f"{where}.query", 'An object of names to lists of strings: {"page": ["2"]}.')
    limit = settings.WR_MAX_TEST_BODY_BYTES
    if "raw_body" in step:
        raw = step["raw_body"]
        if not isinstance(raw, str):
            bad(f"{where}.raw_body", "A string, sent as it is.")
        elif len(raw.encode("utf-8", "surrogatepass")) > limit:
            bad(f"{where}.raw_body", f"At most {limit} bytes.")
    elif "body" in step and _json_size(step["body"]) > limit:
        bad(f"{where}.body", f"At most {limit} bytes as JSON.")
    content_type = step.get("content_type", "")
    if not isinstance(content_type, str) or len(content_type) > 255:
        bad(f"{where}.content_type", "A string of up to 255 characters.")
    expect = step.get("expect", {})
    if not isinstance(expect, dict):
        bad(f"{where}.expect", "An object with optional status, body and state.")
        return
    for name in sorted(set(expect) - STEP_EXPECT_KEYS):
        bad(f"{where}.expect.{name}", "Unknown field.")
    status = expect.get("status")
    if "status" in expect and (
        isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
    ):
        bad(f"{where}.expect.status", "An HTTP status, 100 to 599.")


def tests_get(*, hook: Hook) -> dict[str, Any]:
    suite = HookTests.objects.filter(hook=hook).first()
    if suite is None:
        return {"cases": [], "required": False}
    return {"cases": suite.cases, "required": suite.required}


def tests_save(*, hook: Hook, document: Any) -> dict[str, Any]:
    """Validate and store the hook's test cases (replacing them)."""
    checked = tests_validate(document)
    HookTests.objects.update_or_create(
        hook=hook, defaults={"cases": checked["cases"], "required": checked["required"]}
    )
    return checked


# --- Running ------------------------------------------------------------------------------


@dataclass
class Report:
    """Bounds what a run answers: each value, and all of them together."""

    left: int = REPORT_BYTES

    def value(self, value: Any) -> Any:
        size = _json_size(value)
        if size > VALUE_BYTES or size > self.left:
            self.left -= min(size, VALUE_BYTES)
            return f"(not shown: {size} bytes of JSON)"
        self.left -= size
        return value


@dataclass
class CaseResult:
    name: str
    error: dict[str, Any] | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.error is None and not self.failures,
            "error": self.error,
            "failures": self.failures,
        }


class _Deadline(Exception):
    pass


def _request_for(step: dict[str, Any]) -> Request:
    """A stored-request look-alike of a step, as the write path would have stored it."""
    headers = dict(step.get("headers") or {})
    if "raw_body" in step:
        body = step["raw_body"].encode("utf-8", "surrogatepass")
        content_type = step.get("content_type") or "text/plain"
    elif "body" in step:
        body = json.dumps(step["body"], ensure_ascii=False).encode("utf-8", "surrogatepass")
        content_type = step.get("content_type") or "application/json"
    else:
        body, content_type = b"", step.get("content_type") or ""
    if content_type and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = content_type
    query = {
        k: [v] if isinstance(v, str) else list(v) for k, v in (step.get("query") or {}).items()
    }
    return Request(
        uuid=uuid.uuid4(),
        method=step.get("method", "POST").upper(),
        path=(step.get("path") or "").lstrip("/"),
        headers=headers,
        query=query,
        content_type=content_type.split(";")[0].strip().lower(),
        body=body,
        received_at=timezone.now(),
    )


def tests_run(*, hook: Hook, code: str, cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Run validated `cases` against `code` with the hook's secrets and limits; stores nothing.

    Raises sandbox.CodeError for code that cannot be saved, SandboxUnavailable without a
    sandbox."""
    functions = code_check(code)
    secrets = hook_secrets(hook.pk) if functions else {}
    limits = hook_limits(hook)
    deadline = time.monotonic() + settings.WR_MAX_TEST_RUN_SECONDS
    report = Report()
    results: list[CaseResult] = []
    for case in cases:
        result = CaseResult(name=str(case.get("name", "")))
        results.append(result)
        try:
            _case_run(case, result, code, functions, secrets, limits, deadline, report)
        except _Deadline:
            result.error = {
                "type": "TestRunTimeLimit",
                "message": f"The run's total time limit ({settings.WR_MAX_TEST_RUN_SECONDS:g} s) "
                "was reached before this case finished.",
                "traceback": "",
            }
    answers = [r.as_dict() for r in results]
    passed = sum(1 for a in answers if a["passed"])
    return {"passed": passed, "failed": len(answers) - passed, "results": answers}


def _case_run(
    case: dict[str, Any],
    result: CaseResult,
    code: str,
    functions: list[str],
    secrets: dict[str, str],
    limits: Any,
    deadline: float,
    report: Report,
) -> None:
    def fail(step: int | None, what: str, expected: Any, actual: Any) -> None:
        if len(result.failures) >= MAX_FAILURES:
            return
        failure: dict[str, Any] = {
            "step": step,
            "what": what,
            "expected": report.value(expected),
            "actual": report.value(mask_value(actual, secrets)),
        }
        if what in ("state", "body"):
            failure["diff"] = report.value(json_diff(expected, mask_value(actual, secrets)))
        result.failures.append(failure)

    def errored(step: int, error: dict[str, Any] | None) -> None:
        error = mask_error(error, secrets) or {"type": "Error", "message": "", "traceback": ""}
        if result.error is None:
            result.error = error
        fail(step, "error", None, error)

    # Per room, as in production: each room its own state and seq; the ledger is the hook's.
    states: dict[str, str] = {}
    seqs: dict[str, int] = {}
    ledger: dict[str, int] = {}
    room = MAIN_ROOM
    # A fresh child per case (no hook id: never pooled), responder and reducer apart as in
    # production: module-level globals cannot carry one case's state into the next.
    with (
        session(code=code, secrets=secrets, limits=limits, role="serve") as serve,
        session(code=code, secrets=secrets, limits=limits, role="reduce") as reduce,
    ):
        for index, step in enumerate(case["requests"]):
            if time.monotonic() > deadline:
                raise _Deadline
            request = _request_for(step)
            refused = _route(request, functions, serve, secrets)
            if refused is not None:
                status, body = refused
            elif "responder" in functions:
                answer = serve.respond(request_payload(request))
                if answer.ok:
                    status, body = answer.value["status"], answer.value["body"]
                else:
                    status, body = 500, None
                    errored(index, answer.error)
            else:
                status, body = 202, {"id": str(request.uuid)}
            room = request.room
            if status < 400:
                seq = seqs[room] = seqs.get(room, 0) + 1
                request.seq = seq
                request.id = index + 1  # what a duplicate's duplicate_of names
                outcomes, states[room] = fold(
                    code=code,
                    functions=functions,
                    secrets=secrets,
                    limits=limits,
                    state=states.get(room, "null"),
                    requests=[request],
                    seen=lambda keys: {k: ledger[k] for k in keys if k in ledger},
                    sandbox=reduce if fold_needs_sandbox(functions) else None,
                )
                outcome = outcomes[0]
                if outcome.outcome == Request.Outcome.FAILED:
                    errored(index, outcome.error)
                elif outcome.outcome == Request.Outcome.APPLIED and outcome.idempotency_key:
                    ledger[ledger_key(outcome.idempotency_key)] = index + 1
            state = states.get(room, "null")
            expect = step.get("expect") or {}
            if "status" in expect and expect["status"] != status:
                fail(index, "status", expect["status"], status)
            if "body" in expect and not same(expect["body"], body):
                fail(index, "body", expect["body"], body)
            if "state" in expect and not same(expect["state"], json.loads(state)):
                fail(index, "state", expect["state"], json.loads(state))
    # The case's state: the room of its last request.
    state = states.get(room, "null")
    expect = case.get("expect") or {}
    if "state" in expect and not same(expect["state"], json.loads(state)):
        fail(None, "state", expect["state"], json.loads(state))


def _route(
    request: Request, functions: list[str], serve: Any, secrets: dict[str, str]
) -> tuple[int, Any] | None:
    """Set the step's room as the write path does (the code's `room`, else `?room=`); the
    400 answer the write would get when it cannot go to a room, else None."""
    if "room" not in functions:
        try:
            request.room = param_room(request.query)
        except RoomRefused as refused:
            return refused.status, {"error": {"code": refused.code, "message": refused.message}}
        return None
    result = serve.room(request_payload(request))
    error: dict[str, Any] | None = result.error
    if result.ok:
        problem = name_error(result.value)
        if problem is None:
            request.room = stored_room(result.value)
            return None
        error = {"type": "InvalidRoom", "message": f"room returned {problem}"}
    error = error or {"type": "Error", "message": ""}
    message = f"The hook's room function raised {error['type']}: {error['message']}"
    if error["type"] == "InvalidRoom":
        message = f"The hook's room function returned no valid room: {error['message']}"
    return 400, {"error": {"code": "room_error", "message": mask(message, secrets)}}


def tests_check_for_publish(*, hook: Hook, code: str) -> dict[str, Any] | None:
    """When the hook's tests are required: run them on `code`, and return the run's report if
    any failed (the publish must be refused); None when the publish may go on."""
    suite = HookTests.objects.filter(hook=hook, required=True).first()
    if suite is None or not suite.cases:
        return None
    outcome = tests_run(hook=hook, code=code, cases=suite.cases)
    return outcome if outcome["failed"] else None
