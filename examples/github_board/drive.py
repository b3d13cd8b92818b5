"""Send GitHub 'issues' webhooks, signed like GitHub signs them, including a redelivery and a
forged one, then print the board.

    python examples/github_board/drive.py WRITE_URL READ_URL SECRET
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from client import send, usage, wait_for_seq


def issue_event(action: str, number: int, labels: list[str]) -> dict[str, object]:
    return {
        "action": action,
        "issue": {
            "number": number,
            "title": f"Issue {number}",
            "state": "closed" if action == "closed" else "open",
            "labels": [{"id": i, "name": name, "color": "d73a4a"} for i, name in enumerate(labels)],
            "user": {"login": "octocat", "id": 1},
        },
        "repository": {"id": 1296269, "full_name": "octocat/Hello-World"},
        "sender": {"login": "octocat", "id": 1},
    }


def deliver(write_url: str, secret: str, event: dict[str, object], delivery: str) -> int:
    body = json.dumps(event).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    status, _ = send(
        write_url,
        body,
        {
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": signature,
            "User-Agent": "GitHub-Hookshot/abc123",
        },
    )
    return status


def main() -> None:
    usage(__doc__ or "")
    write_url, read_url, secret = sys.argv[1:4]
    deliveries = [str(uuid.uuid4()) for _ in range(4)]
    statuses = [
        deliver(write_url, secret, issue_event("opened", 1, ["bug"]), deliveries[0]),
        deliver(write_url, secret, issue_event("opened", 2, ["bug", "ui"]), deliveries[1]),
        deliver(write_url, secret, issue_event("opened", 3, []), deliveries[2]),
        deliver(write_url, secret, issue_event("closed", 1, ["bug"]), deliveries[3]),
        deliver(write_url, secret, issue_event("closed", 1, ["bug"]), deliveries[3]),  # redelivery
        deliver(write_url, "not-the-secret", issue_event("opened", 9, ["bug"]), str(uuid.uuid4())),
    ]
    print("statuses", statuses)
    print(json.dumps(wait_for_seq(read_url, 5), indent=2))


if __name__ == "__main__":
    main()
