"""`python -m webreducer.asgiserver`: uvicorn with the options WebReducer's limits need.

Every place that starts the ASGI server (docker-compose.yml, `manage.py runstack`, the tests)
starts it through here, so its hard limits follow the settings (docs/security.md):

- `http="h11"` with `h11_max_incomplete_event_size`: the httptools parser (uvicorn's default
  when installed) keeps any header whole in memory, however big; h11 refuses a request head
  over the bound before the app sees it. The bound sits a little above the app's own limits
  (webreducer.inputs), which answer with a JSON error below it.
- `proxy_headers=False`: uvicorn's X-Forwarded-For handling believes a client's leftmost entry
  when told to trust every address; webreducer.clientip reads the header itself, trusting
  TRUSTED_PROXY_COUNT hops, as on gunicorn.
- `ws_max_size`: a websocket message is bounded like a request body, not uvicorn's 16 MiB.
- `timeout_graceful_shutdown`: on Ctrl-C or SIGTERM uvicorn waits for open connections to end,
  and an SSE stream never does: after GRACEFUL_SHUTDOWN_SECONDS the streams are cancelled (their
  clients reconnect, with Last-Event-ID, to the next server).
- `lifespan="off"`: Django has no lifespan handler; "auto" only logs that it is unsupported.
- `log_config`: uvicorn's own, with the public URLs' keys redacted from every line
  (webreducer.log_redaction).
"""

from __future__ import annotations

import argparse
import copy
import os
from typing import Any

# Long enough for a write or read in flight to be answered; live streams are cut after it.
GRACEFUL_SHUTDOWN_SECONDS = 3


def uvicorn_options() -> dict[str, Any]:
    from webreducer.inputs.limits import backstops

    limits = backstops()
    return {
        "http": "h11",
        "h11_max_incomplete_event_size": limits.head_bytes,
        "proxy_headers": False,
        "ws_max_size": limits.websocket_message_bytes,
        # Small frames to many subscribers: compression costs ~30% more CPU per frame.
        "ws_per_message_deflate": False,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "lifespan": "off",
        "log_config": _log_config(),
    }


def _log_config() -> dict[str, Any]:
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"keys": {"()": "webreducer.log_redaction.KeyRedaction"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["keys"]
    return config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webreducer.settings")
    import uvicorn

    uvicorn.run(
        "webreducer.asgi:application",
        host=args.host,
        port=args.port,
        workers=args.workers,
        **uvicorn_options(),
    )


if __name__ == "__main__":
    main()
