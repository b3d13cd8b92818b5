"""IoT last-seen board: one room per device, and a roster of the fleet in the main room.

A device POSTs {"register": "<id>"} once when it is installed and {"device": "<id>", …readings}
whenever it wakes up. `room` sends each reading to the device's own room (its state: the last
reading, when, and how many reports), so devices fold in parallel and no device's history
crowds another's; registrations go to the main room, whose state is the roster.

A reader learns the fleet from the main room (GET /read/<key>: {"devices": [...]}; the owner
can also list rooms with GET /api/hooks/<id>/rooms/), then reads or subscribes to the devices
it wants (GET /read/<key>?room=<id>). Each room's X-WebReducer-Seq is that device's report
count, so a reader that reconnects sees at once which devices changed since it last looked.
Device ids are room names: 1-200 of A-Z a-z 0-9 . _ : - (another id is refused with 400).
"""

from webreducer import Response


def room(request, secrets):
    body = request.body if isinstance(request.body, dict) else {}
    if "register" in body:
        return None  # the main room: the roster
    return body.get("device")


def responder(request, secrets):
    body = request.body
    if not isinstance(body, dict) or not (body.get("device") or body.get("register")):
        error = 'send {"device": "<id>", ...} or {"register": "<id>"}'
        return Response({"error": error}, status=422)
    return Response({"ok": True, "room": request.room}, status=202)


def reducer(state, request, secrets):
    if request.room is None:
        devices = set((state or {}).get("devices", []))
        devices.add(request.body["register"])
        return {"devices": sorted(devices)}
    reading = dict(request.body)
    reading.pop("device")
    return {
        "device": request.room,
        "seen_at": request.received_at,
        "reading": reading,
        "reports": request.seq,
    }


def query(state, params, secrets):
    # The roster (the main room) also says how big the fleet is; a device's room is its state.
    if isinstance(state, dict) and "devices" in state:
        return {"devices": state["devices"], "count": len(state["devices"])}
    return state
