"""Play two matches of tic-tac-toe in one hook, one room each: the first as two players with
one illegal move and one malformed one (a draw), the second a short one; print both boards.

    python examples/tictactoe/drive.py WRITE_URL READ_URL
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from client import send, usage, wait_for_seq

MOVES = [
    ("X", 1, 1),
    ("O", 0, 0),
    ("O", 2, 2),
    ("X", 0, 0),
    ("X", 0, 2),
    ("O", 2, 0),
    ("X", 1, 0),
    ("O", 1, 2),
    ("X", 2, 1),
    ("O", 0, 1),
]
SHORT = [("X", 0, 0), ("O", 1, 1)]


def play(write_url: str, match: str, moves: list[tuple[str, int, int]]) -> list[int]:
    """The players of `match` join by its URL: the write URL with ?room=<match>."""
    url = f"{write_url}?room={match}"
    statuses = [send(url, {"reset": True})[0]]
    if match == "match-1":
        statuses.append(send(url, {"player": "Z", "row": 9, "col": 0})[0])  # malformed: refused
    for player, row, col in moves:
        statuses.append(send(url, {"player": player, "row": row, "col": col})[0])
    return statuses


def main() -> None:
    usage(__doc__ or "")
    write_url, read_url = sys.argv[1:3]
    # O plays out of turn after its first move; X then tries O's square; the rest is a draw.
    first = play(write_url, "match-1", MOVES)
    second = play(write_url, "match-2", SHORT)
    print("statuses", first + second)
    boards = {
        match: wait_for_seq(f"{read_url}?room={match}", sum(1 for s in statuses if s == 202))
        for match, statuses in (("match-1", first), ("match-2", second))
    }
    print(json.dumps(boards, indent=2))


if __name__ == "__main__":
    main()
