"""Several rooms' states folded in one exchange with the child (Session.reduce_groups, used by
the multi-room batch): each group goes on from its own state, its last reply carries its state
to commit, and a child killed mid-group is replaced without losing, repeating or mixing up any
group's requests."""

from __future__ import annotations

import json
import textwrap

from sandbox import Limits, ReduceStep, session
from tests.sandbox.conftest import FAST, make_request
from tests.sandbox.test_big_state import CAP, GROWING, state_of


def fold_groups(
    groups: list[tuple[str, list[str]]], *, limits: Limits = FAST
) -> list[list[ReduceStep]]:
    code = textwrap.dedent(GROWING)
    with session(code=code, secrets={}, limits=limits, log_state_bytes=CAP) as box:
        return box.reduce_groups(
            [(state, [make_request(body) for body in bodies]) for state, bodies in groups]
        )


def test_each_group_folds_from_its_own_state_and_ends_with_it() -> None:
    steps = fold_groups(
        [
            ("null", ["a", "grow"]),
            (state_of(10, 0), ["a"]),
            (state_of(20, 100), ["grow", "grow", "a"]),
            (state_of(30, 0), []),
            ("null", ["a"]),
        ]
    )
    assert [len(part) for part in steps] == [2, 1, 3, 0, 1]
    assert [step.state_json for step in steps[0]] == [state_of(1, 0), state_of(2, 100)]
    assert [step.state_json for step in steps[1]] == [state_of(11, 0)]
    # A state over the cap comes back only as its size, except as a group's last.
    assert [step.state_json for step in steps[2]] == [None, None, state_of(23, 300)]
    assert [step.state_json for step in steps[4]] == [state_of(1, 0)]
    assert all(step.ok for part in steps for step in part)


def test_a_child_killed_mid_group_is_replaced_and_every_group_folds_once() -> None:
    limits = Limits(cpu_seconds=0.3, wall_seconds=0.8)
    steps = fold_groups(
        [
            (state_of(0, 0), ["grow", "grow"]),
            (state_of(100, 0), ["grow", "grow", "grow", "spin", "a"]),
            (state_of(200, 0), ["grow", "a"]),
        ],
        limits=limits,
    )
    assert [[step.ok for step in part] for part in steps] == [
        [True, True],
        [True, True, True, False, True],
        [True, True],
    ]
    assert steps[0][-1].state_json == state_of(2, 200)
    spin = steps[1][3]
    assert spin.error is not None and spin.error["type"] == "TimeLimitExceeded"
    # Folded again from the last state the parent knew in its own group, once.
    assert spin.state_json == state_of(103, 300)
    assert steps[1][-1].state_json == state_of(104, 300)
    # The group after it starts from its own state, not the one the dead child held.
    assert json.loads(steps[2][-1].state_json or "null") == {"n": 202, "pad": "x" * 100}


def test_a_group_after_a_killed_one_starts_from_its_own_state() -> None:
    limits = Limits(cpu_seconds=0.3, wall_seconds=0.8)
    steps = fold_groups(
        [(state_of(0, 0), ["a", "spin"]), (state_of(50, 0), ["a", "a"])], limits=limits
    )
    assert [[step.ok for step in part] for part in steps] == [[True, False], [True, True]]
    assert steps[0][-1].state_json == state_of(1, 0)
    assert [step.state_json for step in steps[1]] == [state_of(51, 0), state_of(52, 0)]
