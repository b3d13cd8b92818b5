"""What user code can do through the real sandbox (docs/functions.md)."""

from __future__ import annotations

import hashlib
import hmac
import json
import textwrap

import pytest

from sandbox import Limits, session
from tests.sandbox.conftest import COUNTER, FAST, make_request, respond


def reduce(code: str, requests: list[dict], state: str = "null", limits: Limits = FAST) -> list:
    with session(code=textwrap.dedent(code), secrets={}, limits=limits) as box:
        return box.reduce(state, requests)


def test_it_folds_the_counter_reducer() -> None:
    steps = reduce(COUNTER, [make_request({"number": 4}), make_request({"number": 3})])
    assert all(step.ok for step in steps)
    assert json.loads(steps[-1].state_json) == {"number": 7}


def test_it_continues_a_fold_from_the_given_state() -> None:
    steps = reduce(COUNTER, [make_request({"number": 1})], state='{"number":41}')
    assert steps[0].state_json == '{"number":42}'


@pytest.mark.parametrize("falsy", ["0", "false", '""', "[]", "{}", "null"])
def test_it_keeps_falsy_states_as_themselves(falsy: str) -> None:
    code = f"def reducer(state, request, secrets):\n    return {falsy.replace('false', 'False').replace('null', 'None')}\n"
    steps = reduce(code, [make_request({}), make_request({})], state='{"x":1}')
    assert [step.state_json for step in steps] == [falsy, falsy]
    assert all(step.ok for step in steps)


def test_it_passes_a_falsy_state_in_unchanged() -> None:
    code = "def reducer(state, request, secrets):\n    return [state, type(state).__name__]\n"
    assert reduce(code, [make_request({})], state="0")[0].state_json == '[0,"int"]'


def test_it_keeps_the_state_without_a_reducer() -> None:
    steps = reduce("x = 1\n", [make_request({"a": 1})], state='{"kept":true}')
    assert steps[0].ok and steps[0].state_json == '{"kept":true}'


def test_it_serialises_state_compactly_without_ascii_escapes() -> None:
    code = "def reducer(state, request, secrets):\n    return {'name': 'Zoë', 'n': [1, 2]}\n"
    assert reduce(code, [make_request({})])[0].state_json == '{"name":"Zoë","n":[1,2]}'


def test_it_gives_the_request_fields() -> None:
    code = """
    import json
    def responder(request, secrets):
        return {
            "id": request.id, "seq": request.seq, "method": request.method, "path": request.path,
            "event": request.headers["x-github-event"], "same": request.headers.get("X-GitHub-Event"),
            "has": "X-GITHUB-EVENT" in request.headers, "missing": request.headers.get("nope", "-"),
            "page": request.query.get("page"), "page2": request.query["page"],
            "tags": request.query.getlist("tag"), "none": request.query.getlist("x"),
            "content_type": request.content_type, "body": request.body, "raw": request.raw_body,
            "received_at": request.received_at, "json": json.loads(json.dumps(request))["body"],
        }
    """
    request = make_request(
        {"a": [1, 2]},
        headers={"X-GitHub-Event": "push", "Content-Type": "application/json"},
        query={"page": ["2"], "tag": ["a", "b"]},
        path="github",
        seq=7,
    )
    result = respond(code, request)
    assert result.ok, result.error
    body = result.value["body"]
    assert body == {
        "id": request["id"],
        "seq": 7,
        "method": "POST",
        "path": "github",
        "event": "push",
        "same": "push",
        "has": True,
        "missing": "-",
        "page": "2",
        "page2": "2",
        "tags": ["a", "b"],
        "none": [],
        "content_type": "application/json",
        "body": {"a": [1, 2]},
        "raw": '{"a": [1, 2]}',
        "received_at": "2026-11-27T20:00:00.123456Z",
        "json": {"a": [1, 2]},
    }


def test_it_lets_the_reducer_store_the_request_and_its_body() -> None:
    code = "def reducer(state, request, secrets):\n    return {'request': request, 'body': request.body}\n"
    steps = reduce(code, [make_request({"n": 1}, headers={"X-A": "1"})])
    assert steps[0].ok, steps[0].error
    stored = json.loads(steps[0].state_json)
    assert stored["body"] == {"n": 1}
    assert stored["request"]["headers"] == {"X-A": "1"}
    assert stored["request"]["body"] == {"n": 1}


def test_it_parses_a_form_body() -> None:
    code = "def responder(request, secrets):\n    return request.body\n"
    request = make_request(b"a=1&b=x&b=y&c=", content_type="application/x-www-form-urlencoded")
    assert respond(code, request).value["body"] == {"a": "1", "b": ["x", "y"], "c": ""}


def test_it_gives_a_text_body_as_a_string() -> None:
    code = "def responder(request, secrets):\n    return request.body\n"
    request = make_request("héllo\n".encode(), content_type="text/plain; charset=utf-8")
    assert respond(code, request).value["body"] == "héllo\n"


def test_it_gives_no_body_for_binary_content_but_the_exact_bytes() -> None:
    code = """
    import hashlib
    def responder(request, secrets):
        return {
            "body": request.body,
            "sha": hashlib.sha256(request.raw_bytes).hexdigest(),
            "roundtrip": request.raw_body.encode("utf-8", "surrogateescape") == request.raw_bytes,
        }
    """
    raw = bytes(range(256))
    result = respond(code, make_request(raw, content_type="application/octet-stream"))
    assert result.ok, result.error
    assert result.value["body"] == {
        "body": None,
        "sha": hashlib.sha256(raw).hexdigest(),
        "roundtrip": True,
    }


def test_it_gives_no_body_for_invalid_json() -> None:
    code = "def responder(request, secrets):\n    return [request.body, request.raw_body]\n"
    assert respond(code, make_request(b"{not json")).value["body"] == [None, "{not json"]


def test_it_answers_with_a_custom_response() -> None:
    code = """
    from webreducer import Response
    def responder(request, secrets):
        return Response({"queued": True}, status=201, headers={"X-Hook": "yes", "Retry-After": 3})
    """
    result = respond(code)
    assert result.ok, result.error
    assert result.value == {
        "status": 201,
        "headers": {"X-Hook": "yes", "Retry-After": "3"},
        "body": {"queued": True},
    }


def test_it_answers_a_plain_value_with_200() -> None:
    assert respond("def responder(request, secrets):\n    return [1, 'a']\n").value == {
        "status": 200,
        "headers": {},
        "body": [1, "a"],
    }


def test_it_answers_202_with_the_id_by_default() -> None:
    request = make_request({})
    result = respond("x = 1\n", request)
    assert result.value == {"status": 202, "headers": {}, "body": {"id": request["id"]}}


@pytest.mark.parametrize(
    "response",
    [
        "Response(1, status=99)",
        "Response(1, status='200')",
        "Response(1, headers={'X-A': 'a\\r\\nSet-Cookie: x'})",
        "{1, 2}",
    ],
)
def test_it_fails_a_malformed_response(response: str) -> None:
    code = f"from webreducer import Response\ndef responder(request, secrets):\n    return {response}\n"
    result = respond(code)
    assert not result.ok
    assert result.error["type"]


def test_it_runs_query_on_the_state_with_multivalued_params() -> None:
    code = """
    def query(state, params, secrets):
        return {"n": state["n"], "page": params.get("page"), "tags": params.getlist("tag"), "s": secrets["k"]}
    """
    with session(code=textwrap.dedent(code), secrets={"k": "v"}, limits=FAST) as box:
        result = box.query('{"n":3}', {"page": ["2"], "tag": ["a", "b"]})
    assert result.value == {
        "status": 200,
        "headers": {},
        "body": {"n": 3, "page": "2", "tags": ["a", "b"], "s": "v"},
    }


def test_it_serves_the_state_without_a_query() -> None:
    with session(code="", secrets={}, limits=FAST) as box:
        assert box.query('{"n":3}', {}).value == {"status": 200, "headers": {}, "body": {"n": 3}}


def test_it_gives_a_traceback_of_the_users_lines_only() -> None:
    code = "import json\n\ndef helper(x):\n    return json.loads(x)\n\ndef responder(request, secrets):\n    a = 1\n    return helper('{')\n"
    result = respond(code)
    assert not result.ok
    assert result.error["type"] == "JSONDecodeError"
    assert result.error["message"].startswith("Expecting property name")
    traceback = result.error["traceback"]
    assert 'File "hook.py", line 8, in responder' in traceback
    assert 'File "hook.py", line 4, in helper' in traceback
    assert "return helper('{')" in traceback
    assert "json/" not in traceback and "wr_child" not in traceback and "sandbox" not in traceback


def test_it_reports_a_zero_division_with_its_line() -> None:
    result = respond("def responder(request, secrets):\n    x = 1\n    return x / 0\n")
    assert result.error["type"] == "ZeroDivisionError"
    assert result.error["message"] == "division by zero"
    assert 'File "hook.py", line 3, in responder' in result.error["traceback"]


def test_it_reports_an_error_at_module_level_for_every_call() -> None:
    code = "x = 1\nraise ValueError('bad config')\n\ndef reducer(state, request, secrets):\n    return 1\n"
    steps = reduce(code, [make_request({}), make_request({})], state="5")
    assert [step.ok for step in steps] == [False, False]
    assert [step.state_json for step in steps] == ["5", "5"]
    assert steps[0].error["type"] == "ValueError"
    assert 'File "hook.py", line 2, in <module>' in steps[0].error["traceback"]


def test_it_reports_a_syntax_error_for_every_call() -> None:
    with session(code="def reducer(:\n", secrets={}, limits=FAST) as box:
        steps = box.reduce("null", [make_request({})])
    assert not steps[0].ok and steps[0].error["type"] == "SyntaxError"


def test_it_captures_print_and_logging() -> None:
    code = """
    import logging
    print("top level")
    def responder(request, secrets):
        print("hello", 42)
        logging.getLogger("mine").warning("careful")
        logging.info("info too")
        return 1
    """
    result = respond(code)
    assert result.console == "top level\nhello 42\nWARNING:mine:careful\nINFO:root:info too\n"


def test_it_captures_output_per_call() -> None:
    code = "def reducer(state, request, secrets):\n    print('request', request.body)\n    return state\n"
    steps = reduce(code, [make_request(1), make_request(2)])
    assert [step.console for step in steps] == ["request 1\n", "request 2\n"]


def test_it_truncates_output_at_the_limit_with_a_marker() -> None:
    code = "def responder(request, secrets):\n    for i in range(1000):\n        print('x' * 99)\n    return 1\n"
    result = respond(code, limits=Limits(output_bytes=1000))
    assert result.ok
    assert (
        result.console
        == "x" * 99 + "\n" + ("x" * 99 + "\n") * 9 + "[output truncated: limit of 1000 bytes]\n"
    )


def test_it_truncates_output_inside_a_multibyte_character_cleanly() -> None:
    result = respond(
        "def responder(request, secrets):\n    print('é' * 10)\n    return 1\n",
        limits=Limits(output_bytes=5),
    )
    assert result.console == "éé\n[output truncated: limit of 5 bytes]\n"


def test_it_fails_a_non_json_state_and_keeps_the_previous_one() -> None:
    code = """
    class Thing:
        pass
    def reducer(state, request, secrets):
        kind = request.body["kind"]
        if kind == "set":
            return {1, 2}
        if kind == "object":
            return {"x": Thing()}
        if kind == "nan":
            return float("nan")
        if kind == "mutate-then-raise":
            state["n"] = 999
            raise RuntimeError("half-way")
        return {"n": state["n"] + 1}
    """
    kinds = ["ok", "set", "object", "nan", "mutate-then-raise", "ok"]
    steps = reduce(code, [make_request({"kind": k}) for k in kinds], state='{"n":0}')
    assert [step.ok for step in steps] == [True, False, False, False, False, True]
    assert [step.state_json for step in steps] == ['{"n":1}'] * 5 + ['{"n":2}']
    assert steps[1].error["type"] == "StateNotSerializable"
    assert "set" in steps[1].error["message"]
    assert steps[2].error["type"] == "StateNotSerializable"
    assert steps[4].error["type"] == "RuntimeError"


def test_it_fails_a_state_over_the_limit_and_keeps_the_previous_one() -> None:
    code = "def reducer(state, request, secrets):\n    return 'x' * request.body\n"
    limits = Limits(state_bytes=100)
    steps = reduce(code, [make_request(10), make_request(200), make_request(20)], limits=limits)
    assert [step.ok for step in steps] == [True, False, True]
    assert steps[1].state_json == '"' + "x" * 10 + '"'
    assert steps[1].error["type"] == "StateTooLarge"
    assert "limit is 100 bytes" in steps[1].error["message"]


def test_it_refuses_a_state_with_a_nul_character() -> None:
    steps = reduce(
        "def reducer(state, request, secrets):\n    return 'a\\x00b'\n", [make_request({})]
    )
    assert not steps[0].ok and steps[0].error["type"] == "StateNotSerializable"


def test_it_continues_the_fold_after_failed_requests() -> None:
    code = """
    def reducer(state, request, secrets):
        n = request.body
        if n % 3 == 0:
            raise ValueError(f"no multiples of three: {n}")
        return (state or 0) + n
    """
    steps = reduce(code, [make_request(n) for n in range(1, 8)])
    assert [step.ok for step in steps] == [True, True, False, True, True, False, True]
    assert json.loads(steps[-1].state_json) == 1 + 2 + 4 + 5 + 7
    assert steps[2].error["message"] == "no multiples of three: 3"


def test_it_takes_the_idempotency_key_from_the_header_by_default() -> None:
    requests = [
        make_request({}, headers={"idempotency-key": "abc"}),
        make_request({}, headers={"Idempotency-Key": "def"}),
        make_request({}, headers={}),
    ]
    with session(code="", secrets={}, limits=FAST) as box:
        results = box.idempotency_keys(requests)
    assert [r.value for r in results] == ["abc", "def", None]
    assert all(r.ok for r in results)


def test_it_runs_a_custom_idempotency_key() -> None:
    code = """
    def idempotency_key(request, secrets):
        if request.body.get("bad"):
            return 42
        return request.body.get("delivery")
    """
    requests = [make_request({"delivery": "d-1"}), make_request({}), make_request({"bad": True})]
    with session(code=textwrap.dedent(code), secrets={}, limits=FAST) as box:
        results = box.idempotency_keys(requests)
    assert [r.ok for r in results] == [True, True, False]
    assert [r.value for r in results[:2]] == ["d-1", None]
    assert results[2].error["type"] == "TypeError"
    assert "str or None" in results[2].error["message"]


def test_it_runs_idempotency_keys_and_reduce_in_one_session() -> None:
    code = (
        COUNTER
        + "\ndef idempotency_key(request, secrets):\n    return str(request.body['number'])\n"
    )
    requests = [make_request({"number": 2}), make_request({"number": 5})]
    with session(code=code, secrets={}, limits=FAST) as box:
        keys = [r.value for r in box.idempotency_keys(requests)]
        steps = box.reduce("null", requests)
    assert keys == ["2", "5"]
    assert steps[-1].state_json == '{"number":7}'


def test_it_offers_the_allowed_modules_and_the_helpers() -> None:
    code = """
    import base64, collections, datetime, decimal, fractions, hashlib, hmac, itertools, math, re
    import random, statistics, string, textwrap, uuid, urllib.parse, html, copy, heapq, bisect
    import jsonschema
    from webreducer import Response
    def responder(request, secrets):
        jsonschema.validate({"a": 1}, {"type": "object", "required": ["a"]})
        return {
            "hmac": hmac.new(b"k", b"m", hashlib.sha256).hexdigest()[:8],
            "mean": statistics.mean([1, 2, 3]),
            "uuid": len(str(uuid.uuid4())),
            "date": datetime.date(2026, 11, 27).isoformat(),
            "dec": str(decimal.Decimal("1.10") + decimal.Decimal("2.2")),
            "q": urllib.parse.urlencode({"a": "b c"}),
            "latin": "é".encode("latin-1").decode("latin-1"),
            "re": re.sub(r"\\d", "#", "a1b2"),
        }
    """
    result = respond(code)
    assert result.ok, result.error
    assert result.value["body"] == {
        "hmac": hmac.new(b"k", b"m", hashlib.sha256).hexdigest()[:8],
        "mean": 2,
        "uuid": 36,
        "date": "2026-11-27",
        "dec": "3.30",
        "q": "a=b+c",
        "latin": "é",
        "re": "a#b#",
    }


def test_it_seeds_random_differently_in_each_child() -> None:
    code = "import random\ndef responder(request, secrets):\n    return random.random()\n"
    values = {respond(code).value["body"] for _ in range(3)}
    assert len(values) == 3


def test_it_reads_limits_from_settings_with_overrides(settings: object) -> None:
    settings.WR_CPU_SECONDS = 3  # type: ignore[attr-defined]
    settings.WR_MAX_OUTPUT_BYTES = 123  # type: ignore[attr-defined]
    limits = Limits.from_settings({"state_bytes": 99, "wall_seconds": None})
    assert limits == Limits(cpu_seconds=3.0, wall_seconds=2.0, output_bytes=123, state_bytes=99)
    with pytest.raises(ValueError, match="unknown limit"):
        Limits.from_settings({"bogus": 1})


def test_a_missing_secret_says_which_one_and_where_to_set_it() -> None:
    code = """
    def responder(request, secrets):
        return {"default": secrets.get("NOPE", "-"), "got": secrets["GITHUB_SECRET"]}
    """
    set_one = respond(code, secrets={"GITHUB_SECRET": "s"})
    missing = respond(code)

    assert set_one.ok and set_one.value["body"]["got"] == "s"
    assert not missing.ok and missing.error is not None
    assert missing.error["type"] == "MissingSecret"
    assert missing.error["message"].startswith("the secret GITHUB_SECRET is not set")
    assert "Secrets on the hook's page" in missing.error["message"]


def test_a_missing_secret_is_still_a_key_error_to_the_code() -> None:
    code = """
    def responder(request, secrets):
        try:
            return secrets["GITHUB_SECRET"]
        except KeyError:
            return "no secret"
    """
    result = respond(code)

    assert result.ok and result.value["body"] == "no secret"
