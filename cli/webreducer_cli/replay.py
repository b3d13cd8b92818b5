"""Following a publish or rollback: a progress bar of the replay until the version is live."""

from __future__ import annotations

import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from webreducer_cli.errors import CliError
from webreducer_cli.output import err, say
from webreducer_cli.session import Session

POLL_SECONDS = 0.3
# The failed seqs named when a version goes live with failures; the log has the rest.
MAX_NAMED_SEQS = 20


def replay_follow(session: Session, number: int, *, total: int, timeout: float) -> dict[str, Any]:
    """Poll the version until its replay ends; raise CliError unless it went live cleanly."""
    path = session.hook_path(f"versions/{number}/")
    deadline = time.monotonic() + timeout
    columns = (
        TextColumn(f"v{number} replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failures]} failed"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task("replay", total=max(total, 1), failures=0)
        while True:
            version = session.api.get(path)
            state = version.get("progress")
            if state:
                progress.update(
                    task,
                    completed=state.get("applied", 0),
                    total=max(state.get("total") or 0, 1),
                    failures=state.get("failures", 0),
                )
            if version["status"] != "building":
                progress.update(
                    task,
                    completed=progress.tasks[0].total or 0,
                    failures=version.get("failures") or 0,
                )
                break
            if time.monotonic() > deadline:
                raise CliError(
                    f"v{number} is still rebuilding after {timeout:.0f} s (`wr versions`)."
                )
            time.sleep(POLL_SECONDS)
    return replay_check(session, version)


def replay_check(session: Session, version: dict[str, Any]) -> dict[str, Any]:
    number = version["number"]
    if version["status"] == "failed":
        raise CliError(f"v{number} did not go live: {version.get('error') or 'its replay failed.'}")
    failures = version.get("failures") or 0
    if failures:
        seqs = failed_seqs(session, limit=min(failures, MAX_NAMED_SEQS))
        named = ", ".join(str(seq) for seq in seqs)
        more = f" and {failures - len(seqs)} more" if failures > len(seqs) else ""
        raise CliError(
            f"v{number} is live, but {failures} request(s) failed during its replay "
            f"(seq {named}{more}): `wr logs --status failed`. `wr publish --strict` refuses such a version."
        )
    say(f"v{number} is live.")
    return version


def failed_seqs(session: Session, *, limit: int) -> list[int]:
    seqs: list[int] = []
    for entry in session.api.pages(session.hook_path("requests/"), status="failed"):
        if entry.get("seq") is not None:
            seqs.append(entry["seq"])
        if len(seqs) >= limit:
            break
    return sorted(seqs)
