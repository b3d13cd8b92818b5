"""GitHub repository activity board.

Point a GitHub webhook (content type application/json, events: Issues) at the write URL and set
the hook secret GITHUB_SECRET to the webhook's secret. The board counts open and closed issues
per label; redeliveries are recognised by X-GitHub-Delivery and applied once.
"""

from webreducer import Response, WebhookVerificationError, verify_github


def responder(request, secrets):
    try:
        verify_github(request, secrets.get("GITHUB_SECRET", ""))
    except WebhookVerificationError as error:
        return Response({"error": str(error)}, status=401)
    return Response({"ok": True}, status=202)


def idempotency_key(request, secrets):
    return request.headers.get("X-GitHub-Delivery")


# How each action moves an issue between the open and closed columns.
MOVES = {"opened": (1, 0), "closed": (-1, 1), "reopened": (1, -1)}


def reducer(state, request, secrets):
    state = state or {"labels": {}, "open": 0, "closed": 0, "events": 0}
    state["events"] += 1
    if request.headers.get("X-GitHub-Event") != "issues":
        return state
    move = MOVES.get(request.body["action"])
    if move is None:
        return state
    opened, closed = move
    state["open"] += opened
    state["closed"] += closed
    for label in request.body["issue"].get("labels") or [{"name": "(none)"}]:
        counts = state["labels"].setdefault(label["name"], {"open": 0, "closed": 0})
        counts["open"] += opened
        counts["closed"] += closed
    return state


def query(state, params, secrets):
    state = state or {"labels": {}, "open": 0, "closed": 0, "events": 0}
    label = params.get("label")
    if label:
        return state["labels"].get(label, {"open": 0, "closed": 0})
    return state
