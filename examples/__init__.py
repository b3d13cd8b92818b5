"""Example hooks: each folder has `hook.py` (the hook's code) and `drive.py` (a script that
drives it). `CATALOG` lists them for the UI's "load this example" buttons."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Example:
    slug: str
    name: str
    summary: str
    secrets: tuple[str, ...] = ()

    @property
    def code(self) -> str:
        return (HERE / self.slug / "hook.py").read_text()


CATALOG = [
    Example(
        "github_board",
        "GitHub activity board",
        "Issues opened and closed per label; signed; deduplicated by delivery id.",
        ("GITHUB_SECRET",),
    ),
    Example(
        "stripe_ledger",
        "Stripe subscription ledger",
        "Verified Stripe events, applied once per event id; the read URL answers MRR.",
        ("STRIPE_SECRET",),
    ),
    Example(
        "tictactoe",
        "Multiplayer tic-tac-toe",
        "Moves checked by the responder and the reducer; players watch the live board.",
    ),
    Example(
        "iot_last_seen", "IoT last-seen board", "Devices report; readers ask what changed ?since=N."
    ),
    Example(
        "survey",
        "Survey collector",
        "A static site's form posts here (CORS open); the read URL serves the tally.",
    ),
]


def example(slug: str) -> Example:
    return next(e for e in CATALOG if e.slug == slug)
