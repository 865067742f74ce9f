"""Running the bench: an identity pass first (which doubles as the warm-up), then timed passes
in which the methods alternate, so drift in a shared machine's speed hits all of them alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.bench.methods import GenerateRunner, Runner, TurnOutcome
from engine.bench.tasks import Task
from engine.loading import LoadedModel

REFERENCE = "greedy"
OnTurn = Callable[[str], None]
"""Called after every answered turn with a short description (drives the progress bar)."""


class IdentityError(RuntimeError):
    """A method's output differs from greedy's: speculation was not lossless (or the run was not
    deterministic). No speed is reported after this."""

    def __init__(
        self,
        method: str,
        task: str,
        turn: int,
        position: int,
        expected: list[int],
        got: list[int],
        where: str = "generated token",
    ) -> None:
        def at(ids: list[int]) -> str:
            return str(ids[position]) if position < len(ids) else f"end ({len(ids)} tokens)"

        super().__init__(
            f"IDENTITY FAILURE: method {method!r} differs from {REFERENCE} on task {task!r}, "
            f"turn {turn}, at {where} {position} ({REFERENCE}: {at(expected)}, "
            f"{method}: {at(got)}); no speeds are reported"
        )
        self.method, self.task, self.turn, self.position = method, task, turn, position


@dataclass
class Record:
    """One timed turn of one method on one task."""

    method: str
    task: str
    workload: str
    turn: int
    repeat: int
    prompt_tokens: int
    seconds: float
    stats: dict[str, float | int | bool | str]

    @property
    def new_tokens(self) -> int:
        return int(self.stats["new_tokens"])


def first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    """Index of the first differing token (a prefix differs at the shorter length), or None."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def check(runner: str, task: Task, expected: list[TurnOutcome], got: list[TurnOutcome]) -> None:
    """Raise IdentityError at the first turn whose prompt or output differs from the reference
    (a different prompt means the conversations were not rendered alike)."""
    for turn, (ref, out) in enumerate(zip(expected, got, strict=False), start=1):
        position = first_difference(ref.prompt_ids, out.prompt_ids)
        if position is not None:
            raise IdentityError(runner, task.id, turn, position, ref.prompt_ids, out.prompt_ids,
                                "prompt token")
        position = first_difference(ref.token_ids, out.token_ids)
        if position is not None:
            raise IdentityError(runner, task.id, turn, position, ref.token_ids, out.token_ids)
    if len(expected) != len(got):
        raise IdentityError(runner, task.id, min(len(expected), len(got)) + 1, 0, [], [])


def play(runner: Runner, task: Task, max_new_tokens: int, on_turn: OnTurn) -> list[TurnOutcome]:
    outcomes = []
    for outcome in runner.run(task, max_new_tokens):
        outcomes.append(outcome)
        on_turn(f"{runner.name} · {task.id}")
    return outcomes


def identity_pass(
    lm: LoadedModel,
    tasks: Sequence[Task],
    runners: Sequence[Runner],
    max_new_tokens: int,
    on_turn: OnTurn,
) -> dict[str, list[TurnOutcome]]:
    """Every method once on every task, checked against greedy; greedy itself is checked once
    against transformers' `generate(do_sample=False)` on the first task. Returns greedy's
    outputs per task."""
    if runners[0].name != REFERENCE:
        raise ValueError(f"the first runner must be {REFERENCE!r}, the reference")
    reference: dict[str, list[TurnOutcome]] = {}
    for i, task in enumerate(tasks):
        reference[task.id] = play(runners[0], task, max_new_tokens, on_turn)
        others = list(runners[1:])
        if i == 0:
            others.append(GenerateRunner("transformers-greedy", lm))
        for runner in others:
            outcomes = play(runner, task, max_new_tokens, on_turn)
            check(runner.name, task, reference[task.id], outcomes)
    return reference


def timed_passes(
    tasks: Sequence[Task],
    runners: Sequence[Runner],
    reference: dict[str, list[TurnOutcome]],
    repeats: int,
    max_new_tokens: int,
    on_turn: OnTurn,
) -> list[Record]:
    """`repeats` passes over the tasks; the method order rotates per task and pass, and every
    output is checked again (a non-deterministic run fails as loudly as a lossy one)."""
    records: list[Record] = []
    for repeat in range(repeats):
        for i, task in enumerate(tasks):
            shift = (i + repeat) % len(runners)
            for runner in [*runners[shift:], *runners[:shift]]:
                outcomes = play(runner, task, max_new_tokens, on_turn)
                check(runner.name, task, reference[task.id], outcomes)
                records.extend(
                    Record(runner.name, task.id, task.workload, turn, repeat,
                           len(o.prompt_ids), o.seconds, o.stats.to_dict())
                    for turn, o in enumerate(outcomes, start=1)
                )
    return records


def count_turns(tasks: Sequence[Task], runners: Sequence[Runner], repeats: int) -> int:
    """Turns the whole run answers (identity pass, its extra reference check, timed passes)."""
    turns = sum(len(task.turns) for task in tasks)
    return turns * len(runners) * (1 + repeats) + (len(tasks[0].turns) if tasks else 0)
