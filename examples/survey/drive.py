"""Submit survey answers as a browser form would (form-encoded, with an Origin), then print the
tally.

    python examples/survey/drive.py WRITE_URL READ_URL
"""

from __future__ import annotations

import json
import sys
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from client import send, usage, wait_for_seq

FORM = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Origin": "https://my-static-site.example",
}


def main() -> None:
    usage(__doc__ or "")
    write_url, read_url = sys.argv[1:3]
    answers = [
        {"rating": "love it", "comment": "Great product"},
        {"rating": "like it"},
        {"rating": "love it"},
        {"rating": "hate it"},  # not a choice: refused
    ]
    statuses = [send(write_url, urllib.parse.urlencode(a), FORM)[0] for a in answers]
    print("statuses", statuses)
    print(json.dumps(wait_for_seq(read_url, 3), indent=2))


if __name__ == "__main__":
    main()
