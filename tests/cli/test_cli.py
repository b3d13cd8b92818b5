"""`wr` end to end: the real console script, as a subprocess, against gunicorn and a Celery
worker on the test database (docs/cli.md).

Each command runs with HOME in a temporary folder (its config dir) and WR_URL/WR_TOKEN set
the way CI would set them, unless a test is about `wr login` itself.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from accounts.models import User
from accounts.services import api_token_create
from hooks.models import Hook, HookTests, Request
from hooks.pipeline import hook_reduce
from hooks.services import hook_create, hook_secrets
from tests.cli.helpers import SIGNED, Wr, applied_seq, follow, linked, post
from tests.servers import celery_worker, free_port, two_origins, wait_for, wsgi_server

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="a server and a worker need Redis"),
    pytest.mark.usefixtures("quiet_worker"),
]

ADD = """\
def reducer(state, request, secrets):
    state = state or {"total": 0}
    state["total"] += request.body["n"]
    return state
"""
FAILS_ON_ODD = """\
def reducer(state, request, secrets):
    if request.body["n"] % 2:
        raise ValueError("odd")
    return (state or 0) + request.body["n"]
"""


@pytest.fixture(scope="module")
def origins(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[dict[str, str]]:
    # Two origins as `make run` serves them: `wr` talks to the app, writes go to each key's URL.
    logs = tmp_path_factory.mktemp("cli")
    port = free_port()
    env = two_origins(port)
    with django_db_blocker.unblock(), ExitStack() as stack:
        stack.enter_context(wsgi_server(logs, workers=2, port=port, **env))
        stack.enter_context(celery_worker(logs, concurrency=1, name="cli", **env))
        yield env


@pytest.fixture(scope="module")
def base(origins: dict[str, str]) -> str:
    return origins["SITE_ROOT"]


@pytest.fixture(scope="module")
def public(origins: dict[str, str]) -> str:
    return origins["WR_PUBLIC_ORIGIN"]


def one_clear_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


class TestLogin:
    def test_it_stores_the_token_in_a_file_only_the_user_can_read(
        self, base: str, token: str, home: Path, folder: Path
    ) -> None:
        wr = Wr(base, None, home, folder)
        wr.env.pop("WR_URL")

        wr.ok("login", "--url", base, "--token", token)

        config = home / ".config" / "webreducer" / "config.toml"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert token in config.read_text()
        # Neither WR_URL nor WR_TOKEN: the stored login is used.
        assert wr.ok("whoami").stdout.strip() == f"alice@example.com on {base}"

    def test_it_reads_the_token_from_stdin_and_refuses_a_wrong_one_in_one_line(
        self, base: str, token: str, home: Path, folder: Path
    ) -> None:
        wr = Wr(base, None, home, folder)

        line = one_clear_line(wr("login", "--url", base, input="wr_not-a-token\n"))
        assert line.startswith(f"error: {base} refused the token")
        assert not (home / ".config" / "webreducer" / "config.toml").exists()

        wr.ok("login", "--url", base, input=token + "\n")
        assert wr.ok("whoami").stdout.startswith("alice@example.com")

    def test_it_lets_wr_token_override_the_stored_login(
        self, base: str, token: str, bob: User, home: Path, folder: Path
    ) -> None:
        wr = Wr(base, None, home, folder)
        wr.ok("login", "--url", base, "--token", token)

        wr.env["WR_TOKEN"] = api_token_create(user=bob, name="ci")[1]

        assert wr.ok("whoami").stdout.startswith("bob@example.com")


class TestCodeFromAFolder:
    def test_it_creates_a_hook_and_links_the_folder(self, wr: Wr, alice: User) -> None:
        wr.ok("init", "--name", "scores")

        hook = Hook.objects.get(owner=alice)
        assert hook.name == "scores"
        config = (wr.folder / "webreducer.toml").read_text()
        assert f'hook = "{hook.pk}"' in config
        assert 'code = "hook.py"' in config
        # The starter code is the hook's live code, and its starter test passes on it.
        assert (wr.folder / "hook.py").read_text() == hook.live_version.code
        result = wr.ok("test")
        assert "1 passed, 0 failed" in result.stdout

    def test_it_links_an_existing_hook_and_writes_its_draft_to_the_code_file(
        self, wr: Wr, alice: User
    ) -> None:
        hook = hook_create(owner=alice, name="old", code=ADD)

        wr.ok("init", "--hook", str(hook.pk))

        assert (wr.folder / "hook.py").read_text() == ADD
        assert wr.ok("hooks").stdout.count(str(hook.pk)) == 1

    def test_it_reports_a_syntax_error_as_file_line_column_and_keeps_the_draft(
        self, wr: Wr, alice: User
    ) -> None:
        hook = hook_create(owner=alice, code=ADD)
        linked(wr.folder, hook)
        (wr.folder / "hook.py").write_text("def reducer(state, request, secrets)\n    return 1\n")

        result = wr("push")

        line = one_clear_line(result)
        assert re.fullmatch(r"hook\.py:1:\d+: .+", line), line
        hook.refresh_from_db()
        assert hook.draft_code == ADD

    def test_it_pushes_the_code_and_the_tests_then_publishes_with_the_history_replayed(
        self, wr: Wr, public: str, alice: User
    ) -> None:
        hook = hook_create(owner=alice, code=ADD)
        linked(wr.folder, hook)
        for n in (1, 2, 3):
            assert post(public, hook, {"n": n}).status_code == 202
        wait_for(lambda: applied_seq(hook) == 3, 30, "three writes applied")
        doubled = ADD.replace('+= request.body["n"]', '+= 2 * request.body["n"]')
        (wr.folder / "hook.py").write_text(doubled)
        cases = [
            {"name": "doubles", "requests": [{"body": {"n": 2}}], "expect": {"state": {"total": 4}}}
        ]
        (wr.folder / "tests.json").write_text(json.dumps({"cases": cases}))

        wr.ok("push")

        hook.refresh_from_db()
        assert hook.draft_code == doubled
        assert HookTests.objects.get(hook=hook).cases == cases
        assert '-    state["total"] += request.body' in wr.ok("diff").stdout

        result = wr.ok("publish", "--wait")

        assert "v2 is live" in result.stderr
        hook.refresh_from_db()
        assert hook.live_version.number == 2
        state = json.loads(wr.ok("state").stdout)
        assert state == {"total": 12}

    def test_it_exits_1_naming_the_seqs_that_failed_in_the_replay(
        self, wr: Wr, public: str, alice: User
    ) -> None:
        hook = hook_create(owner=alice, code=ADD)
        linked(wr.folder, hook)
        for n in (1, 2, 3, 4):
            assert post(public, hook, {"n": n}).status_code == 202
        wait_for(lambda: applied_seq(hook) == 4, 30, "four writes applied")
        (wr.folder / "hook.py").write_text(FAILS_ON_ODD)

        dry = wr("dry-run")
        assert dry.returncode == 1
        assert "State diff vs live (seq 4):" in dry.stdout
        assert "seq 1: failed: ValueError: odd" in dry.stdout
        assert "seq 3: failed: ValueError: odd" in dry.stdout
        assert "2 request(s) would fail with hook.py" in dry.stderr

        wr.ok("push")

        result = wr("publish", "--wait")

        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        # The progress bar, then the failure as the last line.
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: v2 is live, but 2 request(s) failed during its replay")
        assert "(seq 1, 3)" in last

    def test_it_runs_the_test_cases_against_the_local_file_and_fails_the_build_on_a_failure(
        self, wr: Wr, alice: User
    ) -> None:
        hook = hook_create(owner=alice, code="")  # the draft has no reducer: the file is tested
        linked(wr.folder, hook)
        (wr.folder / "hook.py").write_text(ADD)
        passing = {
            "name": "adds",
            "requests": [{"body": {"n": 2}}, {"body": {"n": 3}, "expect": {"state": {"total": 5}}}],
        }
        failing = {
            "name": "adds wrong",
            "requests": [{"body": {"n": 2}}],
            "expect": {"state": {"total": 3}},
        }
        (wr.folder / "tests.json").write_text(json.dumps({"cases": [passing, failing]}))

        result = wr("test")

        assert result.returncode == 1, result.stderr
        assert "1 passed, 1 failed" in result.stdout
        assert "adds wrong" in result.stdout
        # The failure shows a diff of the expected and the actual state.
        assert '-  "total": 3' in result.stdout
        assert '+  "total": 2' in result.stdout
        assert "1 test case(s) failed" in result.stderr

        (wr.folder / "tests.json").write_text(json.dumps({"cases": [passing]}))
        assert "1 passed, 0 failed" in wr.ok("test").stdout
        # Nothing was stored by the runs.
        assert not HookTests.objects.filter(hook=hook).exists()
        assert not Request.objects.filter(hook=hook).exists()

    def test_it_refuses_to_publish_when_required_test_cases_fail_and_shows_them(
        self, wr: Wr, alice: User
    ) -> None:
        hook = hook_create(owner=alice, code=ADD)
        linked(wr.folder, hook)
        broken = ADD.replace('+= request.body["n"]', '-= request.body["n"]')
        (wr.folder / "hook.py").write_text(broken)
        case = {"name": "adds", "requests": [{"body": {"n": 2}}], "expect": {"state": {"total": 2}}}
        (wr.folder / "tests.json").write_text(json.dumps({"required": True, "cases": [case]}))
        wr.ok("push")

        result = wr("publish", "--wait")

        assert result.returncode == 1
        assert "0 passed, 1 failed" in result.stdout
        assert '+  "total": -2' in result.stdout
        assert result.stderr.strip().splitlines()[-1].startswith("error: Publish refused: ")
        hook.refresh_from_db()
        assert hook.live_version.number == 1
        assert hook.versions.count() == 1

    def test_it_prints_an_api_error_as_one_line(self, wr: Wr) -> None:
        line = one_clear_line(wr("--hook", str(uuid.uuid4()), "state"))

        assert line.startswith("error: ")


class TestRequests:
    def test_it_sets_a_secret_from_stdin_and_sends_writes_with_headers(
        self, wr: Wr, alice: User
    ) -> None:
        hook = hook_create(owner=alice, code=SIGNED)
        linked(wr.folder, hook)

        wr.ok("secrets", "set", "SIG", input="s3cret\n")

        assert hook_secrets(hook.pk) == {"SIG": "s3cret"}
        assert "SIG" in wr.ok("secrets", "list").stdout

        good = wr.ok("send", "--path", "/github", "-H", "X-Signature: s3cret", "-d", '{"n": 1}')
        bad = wr("send", "-H", "X-Signature: guess", "-d", '{"n": 2}')

        assert good.stdout.startswith("HTTP 201")
        assert '"ok": true' in good.stdout
        assert bad.returncode == 1
        assert bad.stdout.startswith("HTTP 401")
        assert "bad signature" in bad.stdout
        stored = Request.objects.get(hook=hook, path="github")
        assert stored.headers["X-Signature"] == "s3cret"
        assert stored.content_type == "application/json"
        # The API token stays with the API: the write URL never sees it.
        for row in Request.objects.filter(hook=hook):
            assert not any(name.lower() == "authorization" for name in row.headers)

    def test_it_shows_the_log_and_follows_new_requests(
        self, wr: Wr, public: str, alice: User
    ) -> None:
        hook = hook_create(owner=alice, code=SIGNED)
        linked(wr.folder, hook)
        wr.ok("secrets", "set", "SIG", input="s3cret")
        wr.ok("send", "-H", "X-Signature: s3cret", "-d", "{}")
        wr("send", "-H", "X-Signature: nope", "-d", "{}")
        wait_for(lambda: applied_seq(hook) == 1, 30, "the write applied")

        log = wr.ok("logs").stdout.splitlines()
        assert [("applied" in line, "rejected" in line) for line in log] == [
            (True, False),
            (False, True),
        ]
        assert "#1" in log[0]
        rejected = wr.ok("logs", "--status", "rejected", "-v").stdout
        assert "rejected  401" in rejected
        # Verbose shows the responder's answer beside the request.
        assert "bad signature" in rejected

        # gunicorn has no WebSockets: --follow falls back to polling.
        follower = follow(wr)
        lines = follower.lines
        try:
            assert post(public, hook, {}, **{"X-Signature": "s3cret"}).status_code == 201
            wait_for(lambda: any("#2" in line for line in lines), 30, "the followed write")
        finally:
            follower.stop()
        assert [line for line in lines if "#2" in line and "applied" in line]
        # The entry printed once, when it was applied (not again on the next polls).
        assert len([line for line in lines if "#2" in line]) == 1

    def test_it_pulls_every_entry_once_in_seq_order_while_writes_continue(
        self, wr: Wr, public: str, alice: User
    ) -> None:
        hook = hook_create(owner=alice, code=ADD)
        linked(wr.folder, hook)
        history = 450  # more than two of the export's chunks (hooks.apis.requests.NDJSON_CHUNK)
        Request.objects.bulk_create(
            Request(
                hook=hook,
                method="POST",
                headers={"Content-Type": "application/json"},
                content_type="application/json",
                body=json.dumps({"n": i}).encode(),
                received_at=timezone.now(),
            )
            for i in range(history)
        )
        hook_reduce(hook_id=hook.pk)
        stored = list(Request.objects.filter(hook=hook).values_list("uuid", flat=True))
        stop = threading.Event()
        sent: list[int] = []

        def writer() -> None:
            while not stop.is_set() and len(sent) < 200:
                sent.append(post(public, hook, {"n": 1}).status_code)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            wait_for(lambda: len(sent) >= 3, 30, "writes under way")
            result = wr.ok("pull")
        finally:
            stop.set()
            thread.join(timeout=60)

        entries = [json.loads(line) for line in result.stdout.splitlines()]
        ids = [entry["id"] for entry in entries]
        assert len(ids) == len(set(ids))
        assert {str(pk) for pk in stored} <= set(ids)
        seqs = [entry["seq"] for entry in entries if entry["seq"] is not None]
        assert seqs == sorted(seqs)
        assert seqs[:history] == list(range(1, history + 1))
        assert f"Pulled {len(entries)} request(s)." in result.stderr

        since = [json.loads(line) for line in wr.ok("pull", "--since", "440").stdout.splitlines()]
        assert [entry["seq"] for entry in since][:10] == list(range(441, 451))
        assert all(entry["seq"] is not None and entry["seq"] > 440 for entry in since)
