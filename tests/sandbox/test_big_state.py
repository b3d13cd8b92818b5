"""Big states (issue 13, finding 4): per request the child sends the new state back only up to
the log cap, else only its size; the reply to a batch's last request always carries the state
to commit, which the parent parses strictly. The state limit still fails exactly the request
that breaks it, a child killed after states the parent was not sent is replaced without losing
or repeating anything, and a forged or inconsistent reply fails only that call."""

from __future__ import annotations

import json
import textwrap

from sandbox import Limits, ReduceStep, session
from tests.sandbox.conftest import FAST, make_request

CAP = 200  # the log cap in these tests: a state of a few hundred bytes is "big"

# {"n": …, "pad": …}: the body "grow" adds 100 bytes of padding, "shrink" drops it all, "huge"
# tries a state over the state limit; every request counts.
GROWING = """
def reducer(state, request, secrets):
    state = state or {"n": 0, "pad": ""}
    if request.body == "grow":
        state["pad"] += "x" * 100
    elif request.body == "shrink":
        state["pad"] = ""
    elif request.body == "huge":
        state["pad"] += "x" * 5000
    elif request.body == "spin":
        import itertools
        any(itertools.repeat(False))
    state["n"] += 1
    return state
"""


def fold(
    code: str, bodies: list[str], *, limits: Limits = FAST, state: str = "null"
) -> list[ReduceStep]:
    with session(code=textwrap.dedent(code), secrets={}, limits=limits, log_state_bytes=CAP) as box:
        return box.reduce(state, [make_request(body) for body in bodies])


def state_of(n: int, pad: int) -> str:
    return json.dumps({"n": n, "pad": "x" * pad}, separators=(",", ":"))


def test_it_sends_states_up_to_the_cap_and_always_the_last_one() -> None:
    steps = fold(GROWING, ["a", "grow", "grow", "grow", "shrink", "grow", "grow"])
    assert all(step.ok for step in steps)
    assert [step.state_json for step in steps] == [
        state_of(1, 0),
        state_of(2, 100),
        None,  # 221 bytes: over the cap, so only its size came back
        None,
        state_of(5, 0),
        state_of(6, 100),
        state_of(7, 200),  # over the cap, but the batch's last: the state to commit
    ]


def test_it_fails_the_request_over_the_state_limit_mid_batch_and_keeps_the_big_state() -> None:
    limits = Limits(cpu_seconds=0.5, wall_seconds=1.5, state_bytes=1000)
    steps = fold(GROWING, ["grow", "grow", "grow", "huge", "a", "huge"], limits=limits)
    assert [step.ok for step in steps] == [True, True, True, False, True, False]
    assert steps[3].error["type"] == "StateTooLarge"
    assert steps[5].error["type"] == "StateTooLarge"
    assert [step.state_json for step in steps[:5]] == [state_of(1, 100), None, None, None, None]
    # The state after the failed last request is the one before it, unchanged by either failure.
    assert steps[5].state_json == state_of(4, 300)


def test_it_replaces_a_child_killed_after_unsent_states_and_folds_each_request_once() -> None:
    limits = Limits(cpu_seconds=0.3, wall_seconds=0.8)
    steps = fold(GROWING, ["grow", "grow", "grow", "spin", "a", "grow"], limits=limits)
    assert [step.ok for step in steps] == [True, True, True, False, True, True]
    assert steps[3].error["type"] == "TimeLimitExceeded"
    # The state the spinning request left is the one before it, which the parent was never
    # sent before the kill: it was folded again from the last state it knew, once.
    assert steps[3].state_json == state_of(3, 300)
    assert steps[-1].state_json == state_of(5, 400)


def test_it_restarts_from_the_state_a_fatal_cpu_limit_reply_carries() -> None:
    code = """
    def reducer(state, request, secrets):
        state = state or {"n": 0, "pad": "x" * 300}
        if request.body == "burn":
            while True:
                try:
                    while True:
                        pass
                except BaseException:
                    pass  # keeps catching the limit: the child gives up and exits
        state["n"] += 1
        return state
    """
    limits = Limits(cpu_seconds=0.2, wall_seconds=5.0)
    steps = fold(code, ["a", "a", "burn", "a"], limits=limits)
    assert [step.ok for step in steps] == [True, True, False, True]
    assert steps[2].error["type"] == "CpuLimitExceeded"
    assert steps[2].state_json == state_of(2, 300)  # sent with the fatal reply
    assert steps[-1].state_json == state_of(3, 300)


# The child's own encoder is replaced from user code (see tests/security/test_strict_json.py):
# `forge(text, size)` makes the runtime answer `text` as the state and `size` as its size.
FORGING = """
def forge(text, size):
    try:
        raise RuntimeError
    except RuntimeError as error:
        frame = error.__traceback__.tb_frame
    while frame is not None and "dump_sized" not in frame.f_globals:
        frame = frame.f_back
    frame.f_globals["dump_sized"] = lambda value, **options: (text, size)

def reducer(state, request, secrets):
    state = state or {"n": 0, "pad": ""}
    if request.body == "big":
        state["pad"] = "x" * 300
    elif request.body == "nan":
        forge('{"n":NaN,"pad":"' + "x" * 300 + '"}', 10)
    elif request.body == "lie":
        forge("{}", 1 << 40)  # a size no state can have
    state["n"] += 1
    return state
"""


def test_it_refuses_a_forged_final_state_and_commits_the_one_before() -> None:
    # The states before the forged one were over the cap: the parent folds them again in a
    # fresh child to learn the state before it, and commits that.
    steps = fold(FORGING, ["big", "a", "nan"])
    assert [step.ok for step in steps] == [True, True, False]
    assert steps[2].error["type"] == "StateNotSerializable"
    assert steps[-1].state_json == state_of(2, 300)


def test_it_refuses_a_forged_state_size_and_goes_on_from_the_right_state() -> None:
    steps = fold(FORGING, ["a", "lie", "a", "a"])
    assert [step.ok for step in steps] == [True, False, True, True]
    assert steps[1].error["type"] == "SandboxError"
    assert steps[1].state_json == state_of(1, 0)
    assert steps[-1].state_json == state_of(3, 0)


def test_it_refuses_an_unasked_big_state_mid_batch() -> None:
    code = FORGING.replace(
        'forge("{}", 1 << 40)', 'forge(\'{"n":1,"pad":"\' + "y" * 300 + \'"}\', 0)'
    )
    steps = fold(code, ["a", "lie", "a"])
    assert [step.ok for step in steps] == [True, False, True]
    assert steps[1].error["type"] == "SandboxError"
    assert steps[-1].state_json == state_of(2, 0)
