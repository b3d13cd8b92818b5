"""Example hooks: each folder has `hook.py` (the hook's code) and a way to drive it: `drive.py`
(a script), or `index.html` (a page on the two-way socket; tictactoe has both). `CATALOG` lists
them for the UI's "load this example" buttons."""

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
    # A request that shows what the example does: (method, path, content type, body).
    sample: tuple[str, str, str, str] = ("POST", "", "application/json", "{}")

    @property
    def code(self) -> str:
        return (HERE / self.slug / "hook.py").read_text()


CATALOG = [
    Example(
        "github_board",
        "GitHub activity board",
        "Issues opened and closed per label; signature checked; redeliveries applied once.",
        ("GITHUB_SECRET",),
        ("POST", "", "application/json", '{"action": "opened", "issue": {"labels": []}}'),
    ),
    Example(
        "stripe_ledger",
        "Stripe subscription ledger",
        "Verified Stripe events, applied once per event id; the read URL answers the MRR.",
        ("STRIPE_SECRET",),
        (
            "POST",
            "",
            "application/json",
            '{"id": "evt_1", "type": "customer.subscription.created"}',
        ),
    ),
    Example(
        "tictactoe",
        "Multiplayer tic-tac-toe",
        "Many matches in one hook, a room each (?room=match-1); players watch the live board.",
        (),
        ("POST", "", "application/json", '{"player": "X", "row": 1, "col": 1}'),
    ),
    Example(
        "cursors",
        "Shared cursors",
        "Pointers as broadcasts of the two-way socket (never stored), clicks as pins in the state.",
        (),
        ("POST", "", "application/json", '{"x": 0.5, "y": 0.5, "label": "here"}'),
    ),
    Example(
        "iot_last_seen",
        "IoT last-seen board",
        "A room per device, a roster in the main room; readers see which devices changed.",
        (),
        ("POST", "", "application/json", '{"device": "sensor-1", "temp": 21.5}'),
    ),
    Example(
        "survey",
        "Survey collector",
        "A static site's form posts here (CORS is open); the read URL serves the tally.",
        (),
        ("POST", "", "application/x-www-form-urlencoded", "rating=love+it&comment=Nice"),
    ),
]


def example(slug: str) -> Example:
    return next(e for e in CATALOG if e.slug == slug)
