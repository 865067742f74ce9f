"""Benchmark tasks: one JSON object per line, validated up front so a typo fails before a
long run starts, with the file and line number in the message."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.prompt_format import SYSTEM_PROMPT

KEYS = frozenset({"id", "system", "turns"})


class TaskFileError(ValueError):
    """A tasks file cannot be read or a line is not a valid task; names file and line."""


@dataclass(frozen=True)
class Task:
    """A conversation to replay: each turn is a user message answered inside one session.
    `workload` is the tasks file's stem, so several files give per-workload tables. `system`
    defaults to `copyspec generate`'s, so a chat gets the same prompt, and the same answer, in
    the bench as on the command line; "" sends none."""

    id: str
    turns: tuple[str, ...]
    workload: str
    system: str = SYSTEM_PROMPT


def load_tasks(path: Path) -> list[Task]:
    """Every task in a JSONL file (blank lines skipped); TaskFileError on the first bad line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise TaskFileError(f"cannot read tasks file {path}: {error}") from error
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        task = parse_task(line, Path(path).stem, where)
        if task.id in seen:
            first = seen[task.id]
            raise TaskFileError(f"{where}: duplicate task id {task.id!r} (first on line {first})")
        seen[task.id] = number
        tasks.append(task)
    if not tasks:
        raise TaskFileError(f"{path}: no tasks (expected one JSON object per line)")
    return tasks


def parse_task(line: str, workload: str, where: str) -> Task:
    """One line as a Task; `where` prefixes every error message."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        message = f"{where}: not valid JSON: {error.msg} (column {error.colno})"
        raise TaskFileError(message) from error
    if not isinstance(data, dict):
        raise TaskFileError(f"{where}: expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - KEYS)
    if unknown:
        names = ", ".join(unknown)
        raise TaskFileError(f"{where}: unknown key(s) {names}; allowed: id, system, turns")
    task_id = data.get("id")
    if not isinstance(task_id, str) or not task_id.strip():
        raise TaskFileError(f"{where}: 'id' must be a non-empty string")
    system = data.get("system", SYSTEM_PROMPT)
    if not isinstance(system, str):
        raise TaskFileError(f"{where}: 'system' must be a string when given ('' for none)")
    turns = data.get("turns")
    if not isinstance(turns, list) or not turns:
        raise TaskFileError(f"{where}: 'turns' must be a non-empty list of user messages")
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, str) or not turn.strip():
            raise TaskFileError(f"{where}: turn {i} must be a non-empty string")
    return Task(task_id, tuple(turns), workload, system)
