"""Play a game of tic-tac-toe as two players (with one illegal move and one malformed one),
then print the board.

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


def main() -> None:
    usage(__doc__ or "")
    write_url, read_url = sys.argv[1:3]
    statuses = [send(write_url, {"reset": True})[0]]
    statuses.append(send(write_url, {"player": "Z", "row": 9, "col": 0})[0])  # malformed: refused
    # O plays out of turn after its first move; X then tries O's square; the rest is a draw.
    for player, row, col in MOVES:
        statuses.append(send(write_url, {"player": player, "row": row, "col": col})[0])
    print("statuses", statuses)
    accepted = sum(1 for status in statuses if status == 202)
    print(json.dumps(wait_for_seq(read_url, accepted), indent=2))


if __name__ == "__main__":
    main()
