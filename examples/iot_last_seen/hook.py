"""IoT last-seen board.

Devices POST {"device": "…", …readings} to the write URL whenever they wake up. A reader that
reconnects asks what changed since the seq it last saw: GET /read/<key>?since=N answers only
the devices that reported after N, and the response header X-WebReducer-Seq is the N to use
next time.
"""

from webreducer import Response


def responder(request, secrets):
    if not isinstance(request.body, dict) or not request.body.get("device"):
        return Response({"error": 'send {"device": "<id>", ...}'}, status=422)
    return Response({"ok": True}, status=202)


def reducer(state, request, secrets):
    state = state or {}
    reading = dict(request.body)
    device = reading.pop("device")
    state[device] = {"seq": request.seq, "seen_at": request.received_at, "reading": reading}
    return state


def query(state, params, secrets):
    since = int(params.get("since") or 0)
    return {device: info for device, info in (state or {}).items() if info["seq"] > since}
