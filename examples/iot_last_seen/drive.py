"""Three devices report; a reader that last saw seq N asks what changed since.

python examples/iot_last_seen/drive.py WRITE_URL READ_URL
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from client import read, send, usage, wait_for_seq


def main() -> None:
    usage(__doc__ or "")
    write_url, read_url = sys.argv[1:3]
    for device, temp in (("boiler", 61.5), ("fridge", 4.2), ("porch", 12.0)):
        send(write_url, {"device": device, "temp": temp})
    wait_for_seq(read_url, 3)
    everything, seq = read(read_url)
    send(write_url, {"device": "fridge", "temp": 5.1})
    send(write_url, {"temp": 1})  # no device: refused by the responder
    wait_for_seq(read_url, seq + 1)
    changed, latest = read(f"{read_url}?since={seq}")
    print(
        json.dumps(
            {
                "first_seq": seq,
                "everything": everything,
                "since": seq,
                "changed": changed,
                "latest": latest,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
