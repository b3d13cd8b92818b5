"""Shared cursors: everyone on the page sees everyone's pointer, and clicks leave pins.

Open examples/cursors/index.html in several windows on the same write URL and room. Pointer
moves are *broadcasts* of the two-way socket: relayed at once to the room's other sockets and
never stored, so they never reach this code. A click is a *write* {"x", "y", "label"}: stored,
folded by the reducer into the room's pins (the last 50), and sent to everyone as a state frame.
Coordinates are fractions of the page (0 to 1).
"""

from webreducer import Response

MAX_PINS = 50


def responder(request, secrets):
    pin = request.body
    if not isinstance(pin, dict):
        return Response({"error": "send a JSON object"}, status=400)
    for axis in ("x", "y"):
        value = pin.get(axis)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            return Response({"error": f"{axis} must be a number from 0 to 1"}, status=422)
    if not isinstance(pin.get("label", ""), str) or len(pin.get("label", "")) > 40:
        return Response({"error": "label must be a string of at most 40 characters"}, status=422)
    return Response({"ok": True}, status=202)


def reducer(state, request, secrets):
    state = state or {"pins": []}
    pin = request.body
    by = request.headers.get("X-WebReducer-Name")
    state["pins"].append({"x": pin["x"], "y": pin["y"], "label": pin.get("label", ""), "by": by})
    state["pins"] = state["pins"][-MAX_PINS:]
    return state
