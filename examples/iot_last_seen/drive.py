"""Three devices register and report; a reader learns the fleet from the roster, reads each
device's room, and after one more report sees which device changed.

python examples/iot_last_seen/drive.py WRITE_URL READ_URL
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from client import read, send, usage, wait_for_seq

DEVICES = (("boiler", 61.5), ("fridge", 4.2), ("porch", 12.0))


def main() -> None:
    usage(__doc__ or "")
    write_url, read_url = sys.argv[1:3]
    for device, temp in DEVICES:
        send(write_url, {"register": device})
        send(write_url, {"device": device, "temp": temp})
    roster = wait_for_seq(read_url, len(DEVICES))
    seen: dict[str, int] = {}
    everything = {}
    for device in roster["devices"]:
        wait_for_seq(f"{read_url}?room={device}", 1)
        everything[device], seen[device] = read(f"{read_url}?room={device}")
    send(write_url, {"device": "fridge", "temp": 5.1})
    refused = send(write_url, {"device": "the fridge"})[0]  # not a room name: 400
    wait_for_seq(f"{read_url}?room=fridge", seen["fridge"] + 1)
    changed = {}
    for device in roster["devices"]:
        state, seq = read(f"{read_url}?room={device}")
        if seq != seen[device]:
            changed[device] = state
    print(
        json.dumps(
            {
                "fleet": roster["devices"],
                "everything": everything,
                "changed": changed,
                "refused": refused,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
