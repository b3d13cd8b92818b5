"""The `wr` client's pure parts: error lines, the config file, the follow tracker, diffs."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from webreducer_cli.config import UserConfig
from webreducer_cli.errors import ApiError, CliError
from webreducer_cli.follow import Tracker, feed_url
from webreducer_cli.output import state_diff_lines
from webreducer_cli.project import Project, project_find
from webreducer_cli.syntax import code_error_line
from webreducer_cli.testcases import cases_file_load, failure_title


def test_it_formats_a_syntax_error_like_a_compiler() -> None:
    error = ApiError.from_response(
        400,
        {
            "error": {
                "code": "syntax_error",
                "message": "SyntaxError: invalid syntax",
                "line": 3,
                "column": 7,
            }
        },
        "Bad Request",
    )

    assert code_error_line(error, "hook.py") == "hook.py:3:7: SyntaxError: invalid syntax"


def test_it_leaves_out_a_column_the_server_does_not_know() -> None:
    error = ApiError(400, "syntax_error", "SyntaxError: bad", {"line": 2, "column": None})

    assert code_error_line(error, "hook.py") == "hook.py:2: SyntaxError: bad"


def test_it_names_each_invalid_field_in_the_error_message() -> None:
    body = {
        "error": {
            "code": "invalid",
            "message": "Some fields are invalid.",
            "fields": {
                "cases[0].name": ["A non-empty string."],
                "required": ["Must be true or false."],
            },
        }
    }

    error = ApiError.from_response(400, body, "Bad Request")

    assert error.message == (
        "Some fields are invalid. cases[0].name: A non-empty string.; required: Must be true or false."
    )


def test_it_says_what_came_when_the_answer_is_not_the_apis_error_shape() -> None:
    error = ApiError.from_response(502, None, "Bad Gateway")

    assert error.message == "HTTP 502: Bad Gateway"


def test_it_writes_the_config_file_with_mode_0600_even_over_a_looser_one(tmp_path: Path) -> None:
    path = tmp_path / "webreducer" / "config.toml"
    path.parent.mkdir()
    path.write_text("")
    path.chmod(0o644)

    UserConfig(url="https://a.example", tokens={"https://a.example": 'wr_"quoted"\\'}).save(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = UserConfig.load(path)
    assert loaded.url == "https://a.example"
    assert loaded.tokens == {"https://a.example": 'wr_"quoted"\\'}


def test_it_finds_the_linked_folder_from_a_subfolder(tmp_path: Path) -> None:
    Project(root=tmp_path, hook="f26fbeb2", url="https://a.example", code="src/hook.py").save()
    inner = tmp_path / "src" / "deep"
    inner.mkdir(parents=True)

    project = project_find(inner)

    assert project is not None
    assert project.hook == "f26fbeb2"
    assert project.code_path == tmp_path / "src" / "hook.py"


def test_it_refuses_a_tests_file_that_is_not_a_cases_document(tmp_path: Path) -> None:
    path = tmp_path / "tests.json"
    path.write_text('[{"name": "x"}]')
    with pytest.raises(CliError, match="expected"):
        cases_file_load(path)

    path.write_text('{"cases": [\n  {"name": }\n]}')
    with pytest.raises(CliError) as error:
        cases_file_load(path)
    assert error.value.message.startswith(f"{path}:2:")


def test_it_prints_a_followed_entry_once_it_has_an_outcome_and_once_per_outcome() -> None:
    shown: list[tuple[str, Any]] = []
    tracker = Tracker(status=None, show=lambda entry: shown.append((entry["id"], entry["outcome"])))

    tracker.offer({"id": "a", "outcome": "pending"})
    tracker.offer({"id": "a", "outcome": "applied", "seq": 1})
    tracker.offer({"id": "a", "outcome": "applied", "seq": 1})  # the feed and a poll both say so
    tracker.offer({"id": "b", "outcome": "rejected"})

    assert shown == [("a", "applied"), ("b", "rejected")]
    assert tracker.pending() == set()


def test_it_follows_only_the_outcome_asked_for() -> None:
    shown: list[str] = []
    tracker = Tracker(status="failed", show=lambda entry: shown.append(entry["id"]))

    for entry in ({"id": "a", "outcome": "applied"}, {"id": "b", "outcome": "failed"}):
        tracker.offer(entry)

    assert shown == ["b"]


def test_it_follows_the_feed_over_tls_when_the_server_is_https() -> None:
    assert feed_url("https://w.example", "h") == "wss://w.example/ws/hooks/h/"
    assert feed_url("http://127.0.0.1:8000", "h") == "ws://127.0.0.1:8000/ws/hooks/h/"


def test_it_shows_state_diff_operations_as_lines() -> None:
    ops = [
        {"op": "replace", "path": "/number", "value": 16, "old": 8},
        {"op": "add", "path": "/new", "value": [1]},
        {"op": "remove", "path": "/gone", "old": "x"},
    ]

    assert state_diff_lines(ops) == ["~ /number: 8 → 16", "+ /new: [1]", '- /gone: "x"']


def test_it_numbers_test_steps_from_one() -> None:
    assert failure_title({"step": 0, "what": "status"}) == "step 1: status"
    assert failure_title({"step": None, "what": "state"}) == "after the last step: state"


def test_it_has_help_for_every_command() -> None:
    from click.testing import CliRunner
    from webreducer_cli.main import cli

    runner = CliRunner()
    names = [[name] for name in cli.commands] + [["secrets", sub] for sub in ("set", "list", "rm")]
    for args in names:
        result = runner.invoke(cli, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
        assert result.output.startswith(f"Usage: cli {' '.join(args)}"), result.output
