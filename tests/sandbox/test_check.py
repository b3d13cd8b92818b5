from __future__ import annotations

import pytest

from sandbox import CodeError, check_code


def test_it_returns_the_contract_functions_the_code_defines() -> None:
    code = "def reducer(s, r, x):\n    return s\n\ndef query(s, p, x):\n    return s\n\ndef helper():\n    pass\n"
    assert check_code(code, max_bytes=1000) == frozenset({"reducer", "query"})


def test_it_accepts_empty_code() -> None:
    assert check_code("", max_bytes=10) == frozenset()


def test_it_reports_a_syntax_error_with_line_and_column() -> None:
    with pytest.raises(CodeError) as caught:
        check_code(
            "x = 1\n\ndef reducer(state, request, secrets)\n    return state\n", max_bytes=1000
        )
    assert caught.value.line == 3
    assert caught.value.column is not None
    assert str(caught.value).startswith("SyntaxError: ")
    assert "(line 3, column " in str(caught.value)


def test_it_reports_an_indentation_error() -> None:
    with pytest.raises(CodeError) as caught:
        check_code("x = 1\n  y = 2\n", max_bytes=1000)
    assert caught.value.line == 2
    assert str(caught.value).startswith("IndentationError: ")


def test_it_refuses_code_over_the_size_limit() -> None:
    with pytest.raises(CodeError, match="limit is 10 bytes"):
        check_code("x = 'more than ten bytes'", max_bytes=10)


def test_it_refuses_null_bytes_without_crashing() -> None:
    with pytest.raises(CodeError):
        check_code("x = 1\x00", max_bytes=100)


@pytest.mark.parametrize(
    "code",
    [
        "reducer = 5",
        "responder = lambda request, secrets: 1",
        "from json import loads as query",
        "class idempotency_key:\n    pass",
        "for reducer in []:\n    pass",
        "if True:\n    query = 1",
        "async def reducer(state, request, secrets):\n    return state",
    ],
)
def test_it_refuses_a_contract_name_that_is_not_a_function(code: str) -> None:
    with pytest.raises(CodeError) as caught:
        check_code(code, max_bytes=1000)
    assert caught.value.line is not None


def test_it_does_not_execute_the_code(tmp_path: object) -> None:
    # Would raise (or worse) if executed; compiling it is harmless.
    assert (
        check_code("raise SystemExit(1)\nimport os\nos._exit(1)\n", max_bytes=1000) == frozenset()
    )


def test_it_ignores_names_bound_inside_functions_and_comprehensions() -> None:
    code = "def f():\n    reducer = 1\n    return reducer\n\nx = [query for query in range(3)]\n"
    assert check_code(code, max_bytes=1000) == frozenset()


def test_it_reads_the_presence_flag_statically() -> None:
    assert check_code("PRESENCE = True\n", max_bytes=1000) == {"PRESENCE"}
    assert check_code(
        "PRESENCE: bool = True\ndef reducer(s, r, x):\n    return s\n", max_bytes=1000
    ) == {"PRESENCE", "reducer"}
    assert check_code("PRESENCE = False\n", max_bytes=1000) == frozenset()


@pytest.mark.parametrize(
    "code",
    [
        "PRESENCE = 1\n",
        "PRESENCE = bool('x')\n",
        "for PRESENCE in [True]:\n    pass\n",
        "import os as PRESENCE\n",
    ],
)
def test_it_refuses_a_presence_flag_that_is_not_a_literal_bool(code: str) -> None:
    with pytest.raises(CodeError, match="PRESENCE"):
        check_code(code, max_bytes=1000)
