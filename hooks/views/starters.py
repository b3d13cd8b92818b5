"""Example hooks: the code a new hook can start from, also shown on the docs page."""

from __future__ import annotations

from dataclasses import dataclass

from hooks.services import EXAMPLE_CODE


@dataclass(frozen=True)
class Starter:
    slug: str
    title: str
    summary: str
    code: str
    # A request that shows what the example does: (method, path, content type, body).
    sample: tuple[str, str, str, str] = ("POST", "", "application/json", '{"number": 1}')


WEBHOOK_CODE = '''\
from webreducer import Response, WebhookVerificationError, verify_github


def responder(request, secrets):
    """Refuse anything GitHub did not sign: a rejected request is logged, never reduced."""
    try:
        verify_github(request, secrets["GITHUB_WEBHOOK_SECRET"])
    except WebhookVerificationError as error:
        return Response({"error": str(error)}, status=401)
    return {"ok": True}


def idempotency_key(request, secrets):
    # GitHub retries a delivery with the same id: a retry is recorded as a duplicate.
    return request.headers.get("X-GitHub-Delivery")


def reducer(state, request, secrets):
    state = state or {"events": {}, "open_issues": 0}
    event = request.headers.get("X-GitHub-Event", "unknown")
    state["events"][event] = state["events"].get(event, 0) + 1
    if event == "issues":
        action = request.body.get("action")
        if action == "opened":
            state["open_issues"] += 1
        elif action == "closed":
            state["open_issues"] -= 1
    return state
'''

GAME_CODE = '''\
from webreducer import Response

MOVES = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}
SIZE = 10


def responder(request, secrets):
    """Answer bad moves at once (422 rejects them); good ones are applied in order."""
    body = request.body
    if not isinstance(body, dict) or not isinstance(body.get("player"), str):
        return Response({"error": 'send {"player": "ada", "move": "up"}'}, status=422)
    if body.get("move") not in MOVES:
        return Response({"error": f"move is one of {sorted(MOVES)}"}, status=422)
    return Response({"accepted": True}, status=202)


def reducer(state, request, secrets):
    """The world every player sees: positions, and a coin to race for."""
    state = state or {"players": {}, "coin": [5, 5], "turn": 0}
    name, (dx, dy) = request.body["player"], MOVES[request.body["move"]]
    player = state["players"].setdefault(name, {"x": 0, "y": 0, "score": 0})
    player["x"] = max(0, min(SIZE - 1, player["x"] + dx))
    player["y"] = max(0, min(SIZE - 1, player["y"] + dy))
    if [player["x"], player["y"]] == state["coin"]:
        player["score"] += 1
        # Deterministic, so a replay after publishing rebuilds the same world.
        state["coin"] = [(request.seq * 7) % SIZE, (request.seq * 3) % SIZE]
    state["turn"] = request.seq
    return state
'''

IOT_CODE = '''\
def reducer(state, request, secrets):
    """Last seen per device, with the seq of the request that last changed it."""
    state = state or {}
    reading = request.body
    device = reading["device"]
    state[device] = {"seen": request.received_at, "seq": request.seq, "data": reading}
    return state


def query(state, params, secrets):
    """GET /read/<key>?since=N: only the devices that changed after seq N.

    The answer's X-WebReducer-Seq header is the N to send next time.
    """
    since = int(params.get("since") or 0)
    return {device: seen for device, seen in (state or {}).items() if seen["seq"] > since}
'''

STARTERS = [
    Starter(
        "counter",
        "Counter",
        "Counts requests and adds up the number field of JSON bodies.",
        EXAMPLE_CODE,
    ),
    Starter(
        "webhook",
        "GitHub webhook",
        "Checks the X-Hub-Signature-256 signature with a secret, dedups retries, counts events.",
        WEBHOOK_CODE,
        ("POST", "github", "application/json", '{"action": "opened"}'),
    ),
    Starter(
        "game",
        "Multiplayer game",
        "Players send moves; every client subscribed to the read URL gets the new world.",
        GAME_CODE,
        ("POST", "", "application/json", '{"player": "ada", "move": "right"}'),
    ),
    Starter(
        "iot",
        "IoT last seen",
        "Devices report in; a reconnecting device asks what changed since it last looked.",
        IOT_CODE,
        ("POST", "", "application/json", '{"device": "sensor-1", "celsius": 21.5}'),
    ),
    Starter("blank", "Blank", "No functions: requests are stored and the state stays null.", ""),
]
STARTERS_BY_SLUG = {starter.slug: starter for starter in STARTERS}
