"""Replay workloads: read the JSONL format, or extract edits from a local git repository.

A record is `{repo, commit, path, function, turns: [{context_text, target_text, instruction}]}`.
The context is a ChatML user turn holding the before-code in a ```python fence and the commit
subject; the target is the after-code in a fence plus `<|im_end|>`. Chains carry three turns,
each context holding the earlier turns with their real targets as assistant answers.

`--repo` extraction reads `git log` and `git show` of a local repository (no network): the
functions one commit changed (Python `ast`), whole small files, and chains of three
consecutive commits that changed one function.
"""

from __future__ import annotations

import ast
import json
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.bench.replay import Pair

SMALL_FILE_CHARS = 12_000
"""Whole-file pairs only for files up to this size, before and after."""


class WorkloadError(Exception):
    """A workload file or repository that cannot be read: one line for the user."""


def user_turn(code: str, instruction: str) -> str:
    return f"<|im_start|>user\n```python\n{code}\n```\n\n{instruction}<|im_end|>\n"


def answer(code: str) -> str:
    return f"```python\n{code}\n```<|im_end|>"


ASSISTANT = "<|im_start|>assistant\n"


def chain_record(repo: str, path: str, name: str, versions: list[str],
                 commits: list[tuple[str, str]]) -> dict[str, Any]:
    """A record with one turn per commit: versions[0] is the before-code of commits[0]."""
    turns, context = [], user_turn(versions[0], commits[0][1]) + ASSISTANT
    for i, (sha, subject) in enumerate(commits):
        if i:
            context += f"{answer(versions[i])}\n<|im_start|>user\n{subject}<|im_end|>\n{ASSISTANT}"
        turns.append({"context_text": context, "target_text": answer(versions[i + 1]),
                      "instruction": subject, "commit": sha})
    return {"repo": repo, "commit": commits[-1][0], "commits": [c[0] for c in commits],
            "path": path, "function": name, "turns": turns}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise WorkloadError(f"cannot read {path}: {error.strerror or error}") from error
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            turns = record["turns"]
            if not turns or not all("context_text" in t and "target_text" in t for t in turns):
                raise KeyError("turns")
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise WorkloadError(f"{path}:{number}: not a replay record ({error})") from error
        records.append(record)
    if not records:
        raise WorkloadError(f"{path} holds no records")
    return records


def tokenize(records: list[dict[str, Any]], workload: str, tokenizer: Any,
             limit: int | None = None) -> list[Pair]:
    """Token-id pairs, one per turn; `limit` keeps the first records only."""
    pairs = []
    for number, record in enumerate(records[:limit]):
        for turn, item in enumerate(record["turns"], 1):
            context = tokenizer(item["context_text"], add_special_tokens=False)["input_ids"]
            target = tokenizer(item["target_text"], add_special_tokens=False)["input_ids"]
            pairs.append(Pair(f"{workload}/{number}/{turn}", workload, turn, context, target))
    return pairs


# --- extraction from git ---------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    sha: str
    parent: str
    subject: str


def git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=True, timeout=60)
    except FileNotFoundError as error:
        raise WorkloadError("git is not installed") from error
    except subprocess.CalledProcessError as error:
        raise WorkloadError(f"git {args[0]} failed in {repo}: {error.stderr.strip()}") from error
    return done.stdout


def commits(repo: Path, max_commits: int) -> list[Commit]:
    """Non-merge commits with one parent, oldest first."""
    log = git(repo, "log", "--no-merges", "--format=%H %P%x09%s", f"-n{max_commits}", "--",
              "*.py")
    found = []
    for line in log.splitlines():
        shas, _, subject = line.partition("\t")
        parts = shas.split()
        if len(parts) == 2 and subject.strip():
            found.append(Commit(parts[0], parts[1], subject.strip()))
    return found[::-1]


def changed_python_files(repo: Path, commit: Commit) -> list[str]:
    out = git(repo, "diff", "--name-only", "--diff-filter=M", commit.parent, commit.sha, "--",
              "*.py")
    return [line for line in out.splitlines() if line]


def show(repo: Path, sha: str, path: str) -> str | None:
    try:
        return git(repo, "show", f"{sha}:{path}")
    except WorkloadError:
        return None


def functions(source: str) -> dict[str, str]:
    """Qualified name → dedented source (decorators included) of every function and method."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    lines = source.splitlines()
    found: dict[str, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                    text = "\n".join(lines[first - 1 : child.end_lineno])
                    found.setdefault(name, textwrap.dedent(text))
                visit(child, f"{name}.")

    visit(tree, "")
    return found


def extract(repo: Path, max_commits: int = 400, max_pairs: int = 100) -> dict[str, list[dict]]:
    """The three workloads of a local repository, named like the shared JSONL files."""
    if not (repo / ".git").exists() and not git(repo, "rev-parse", "--git-dir").strip():
        raise WorkloadError(f"{repo} is not a git repository")
    name = repo.resolve().name
    single_function: list[dict] = []
    single_file: list[dict] = []
    history: dict[tuple[str, str], list[tuple[Commit, str, str]]] = {}
    for commit in commits(repo, max_commits):
        for path in changed_python_files(repo, commit):
            before, after = show(repo, commit.parent, path), show(repo, commit.sha, path)
            if before is None or after is None or before == after:
                continue
            if (len(single_file) < max_pairs and len(before) <= SMALL_FILE_CHARS
                    and len(after) <= SMALL_FILE_CHARS):
                single_file.append(single_record(name, commit, path, "", before, after))
            old, new = functions(before), functions(after)
            for function, text in new.items():
                if function in old and old[function] != text:
                    history.setdefault((path, function), []).append((commit, old[function], text))
                    if len(single_function) < max_pairs:
                        single_function.append(
                            single_record(name, commit, path, function, old[function], text))
    return {"single_function": single_function, "single_file": single_file,
            "multi_turn": list(chains(name, history, max_pairs))}


def single_record(repo: str, commit: Commit, path: str, function: str, before: str,
                  after: str) -> dict[str, Any]:
    record = chain_record(repo, path, function, [before.rstrip("\n"), after.rstrip("\n")],
                          [(commit.sha, commit.subject)])
    record.pop("commits")
    return record


def chains(repo: str, history: dict[tuple[str, str], list[tuple[Commit, str, str]]],
           max_pairs: int) -> Iterator[dict[str, Any]]:
    """Three consecutive changes of one function where each starts from the last one's result."""
    count = 0
    for (path, function), changes in history.items():
        for i in range(len(changes) - 2):
            window = changes[i : i + 3]
            if all(window[j][2] == window[j + 1][1] for j in range(2)):
                versions = [window[0][1], *(change[2] for change in window)]
                yield chain_record(repo, path, function, versions,
                                   [(c.sha, c.subject) for c, _, _ in window])
                count += 1
                if count >= max_pairs:
                    return
                break
