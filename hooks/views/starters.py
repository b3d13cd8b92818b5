"""The code a new hook can start from (the counter and the examples/ folder), also shown on
the docs page."""

from __future__ import annotations

from dataclasses import dataclass

from examples import CATALOG
from hooks.services import EXAMPLE_CODE


@dataclass(frozen=True)
class Starter:
    slug: str
    title: str
    summary: str
    code: str
    # A request that shows what the example does: (method, path, content type, body).
    sample: tuple[str, str, str, str] = ("POST", "", "application/json", '{"number": 1}')


STARTERS = [
    Starter(
        "counter",
        "Counter",
        "Counts requests and adds up the number field of JSON bodies.",
        EXAMPLE_CODE,
    ),
    # The examples/ folder: each also has a driver script (docs/ingestion.md).
    *(Starter(e.slug, e.name, e.summary, e.code, e.sample) for e in CATALOG),
    Starter("blank", "Blank", "No functions: requests are stored and the state stays null.", ""),
]
STARTERS_BY_SLUG = {starter.slug: starter for starter in STARTERS}
