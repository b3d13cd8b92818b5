"""Multiplayer tic-tac-toe: any number of matches in one hook, one room per match.

Players join a match by its URL: they POST {"player": "X" or "O", "row": 0-2, "col": 0-2} to
the write URL with ?room=<match> (e.g. ?room=match-42) and watch that board on the read URL's
websocket (/read/<key>/live?room=match-42). Without a `room` function the room is `?room=`;
each match has its own board and its own seq, and matches are folded in parallel. The responder refuses malformed moves
before they are stored (it cannot see the board); the reducer refuses moves that are illegal
on the board (out of turn, taken square, game over) and records why. POST {"reset": true}
starts a new game.
"""

from webreducer import Response

LINES = [[(r, c) for c in range(3)] for r in range(3)]
LINES += [[(r, c) for r in range(3)] for c in range(3)]
LINES += [[(i, i) for i in range(3)], [(i, 2 - i) for i in range(3)]]


def new_game():
    return {
        "board": [[None] * 3 for _ in range(3)],
        "turn": "X",
        "winner": None,
        "moves": 0,
        "last_error": None,
    }


def responder(request, secrets):
    move = request.body
    if not isinstance(move, dict):
        return Response({"error": "send a JSON object"}, status=400)
    if move.get("reset") is True:
        return Response({"ok": True}, status=202)
    if move.get("player") not in ("X", "O"):
        return Response({"error": "player must be X or O"}, status=422)
    for axis in ("row", "col"):
        if move.get(axis) not in (0, 1, 2):
            return Response({"error": f"{axis} must be 0, 1 or 2"}, status=422)
    return Response({"ok": True}, status=202)


def winner(board):
    for line in LINES:
        marks = {board[r][c] for r, c in line}
        if len(marks) == 1 and None not in marks:
            return marks.pop()
    if all(cell for row in board for cell in row):
        return "draw"
    return None


def reducer(state, request, secrets):
    state = state or new_game()
    move = request.body
    if move.get("reset"):
        return new_game()
    state["last_error"] = None
    if state["winner"]:
        state["last_error"] = f"the game is over ({state['winner']})"
    elif move["player"] != state["turn"]:
        state["last_error"] = f"it is {state['turn']}'s turn"
    elif state["board"][move["row"]][move["col"]] is not None:
        state["last_error"] = "that square is taken"
    else:
        state["board"][move["row"]][move["col"]] = move["player"]
        state["moves"] += 1
        state["turn"] = "O" if move["player"] == "X" else "X"
        state["winner"] = winner(state["board"])
    return state
