"""Multiplayer tic-tac-toe: any number of matches in one hook, one room per match.

Two ways to play a match (?room=match-42 names it; each match has its own board and seq, and
matches are folded in parallel):

- Over the two-way socket (examples/tictactoe/index.html): each player opens
  /write/<key>/live?room=match-42&read=<read key>&name=<their name>, sends {"row", "col"} as
  writes and gets the board as state frames. With PRESENCE = True the reducer also folds each
  socket's JOIN and LEAVE: the first two names to join sit as X and O and keep their seat for
  the whole game (a reload or a reconnect is the same name); later ones watch.
- Over HTTP (examples/tictactoe/drive.py): POST {"player": "X" or "O", "row", "col"} to the
  write URL with ?room=match-42, and watch /read/<key>/live?room=match-42.

The responder refuses malformed moves before they are stored (it cannot see the board); the
reducer refuses moves that are illegal on the board (out of turn, taken square, game over, no
seat) and records why. {"reset": true} starts a new game and frees the seats of players who
are no longer connected.
"""

from webreducer import Response

PRESENCE = True  # fold each socket's JOIN and LEAVE (docs/functions.md, "Presence")

LINES = [[(r, c) for c in range(3)] for r in range(3)]
LINES += [[(r, c) for r in range(3)] for c in range(3)]
LINES += [[(i, i) for i in range(3)], [(i, 2 - i) for i in range(3)]]


def new_game(players=None, online=None):
    return {
        "board": [[None] * 3 for _ in range(3)],
        "turn": "X",
        "winner": None,
        "moves": 0,
        "last_error": None,
        "players": players or {"X": None, "O": None},  # seat -> name (socket players)
        "online": online or {},  # connection id -> name, from JOIN and LEAVE
    }


def responder(request, secrets):
    move = request.body  # JOIN and LEAVE never reach the responder
    if not isinstance(move, dict):
        return Response({"error": "send a JSON object"}, status=400)
    if move.get("reset") is True:
        return Response({"ok": True}, status=202)
    # Over the socket the player is the seat of the socket's name; over HTTP it is said.
    if request.method != "WS" and move.get("player") not in ("X", "O"):
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


def seat(state, name):
    """Seat a socket's name at the first free seat, unless it has one (or has no name)."""
    seats = state["players"]
    if name and name not in seats.values():
        free = [mark for mark in ("X", "O") if seats[mark] is None]
        if free:
            seats[free[0]] = name


def player_of(state, request):
    if request.method != "WS":
        return request.body["player"]
    name = request.headers.get("X-WebReducer-Name")
    return next((mark for mark, who in state["players"].items() if name and who == name), None)


def reducer(state, request, secrets):
    state = state or new_game()
    state.setdefault("players", {"X": None, "O": None})  # a board of the code before seats
    state.setdefault("online", {})
    move = request.body
    if request.method == "JOIN":
        state["online"][move["connection"]] = move["name"]
        seat(state, move["name"])
        return state
    if request.method == "LEAVE":
        state["online"].pop(move["connection"], None)
        return state
    if move.get("reset"):
        here = set(state["online"].values())
        players = {mark: who if who in here else None for mark, who in state["players"].items()}
        return new_game(players, state["online"])
    state["last_error"] = None
    player = player_of(state, request)
    if state["winner"]:
        state["last_error"] = f"the game is over ({state['winner']})"
    elif player is None:
        state["last_error"] = "you have no seat at this table: you are watching"
    elif player != state["turn"]:
        state["last_error"] = f"it is {state['turn']}'s turn"
    elif state["board"][move["row"]][move["col"]] is not None:
        state["last_error"] = "that square is taken"
    else:
        state["board"][move["row"]][move["col"]] = player
        state["moves"] += 1
        state["turn"] = "O" if player == "X" else "X"
        state["winner"] = winner(state["board"])
    return state
