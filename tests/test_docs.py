"""The docs are true: every flag a README command uses exists in the parser it names, every
script and relative link exists, the cheap commands run as written (the quick start on the
built-in model included), docs/protocol.md names exactly the custom methods, notifications
and commands the server has, and docs/design.md names only modules and objects that exist,
every module of the two packages, and the defaults the code defines."""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from copyspec_lsp.__main__ import build_parser as lsp_parser
from engine.cli import build_parser as copyspec_parser

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PROTOCOL = ROOT / "docs" / "protocol.md"
DESIGN = ROOT / "docs" / "design.md"
TICKED = re.compile(r"`([^`\n]+)`")
DOTTED = re.compile(r"(?:engine|copyspec_lsp)(?:\.\w+)+")
"""A module, class, function or constant of ours, as design.md names them."""
DEFAULTS_MARK = "<!-- defaults:"
"""Opens design.md's table of defaults: | what | `value` | `where.it.is.defined` |."""
CUSTOM_NAME = re.compile(r"copyspec[/.][a-z]+")
"""A custom LSP method or notification (`copyspec/…`) or command (`copyspec.…`)."""
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
FOREIGN = {"npm", "ln", "node", "huggingface-cli"}
"""Commands of other tools, shown as they are; not checked here."""
TOOLS = {"copyspec": "copyspec", ".venv/bin/copyspec": "copyspec",
         "copyspec-lsp": "copyspec-lsp", ".venv/bin/copyspec-lsp": "copyspec-lsp"}


def blocks(*languages: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text(encoding="utf-8"))
            if lang in languages]


def shell_commands() -> list[list[str]]:
    """Each simple command of the README's bash/sh blocks, as argument lists."""
    commands = []
    for body in blocks("bash", "sh"):
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            command: list[str] = []
            for word in [*words, "&&"]:
                if word in ("&&", ";", "|"):
                    if command:
                        commands.append(command)
                    command = []
                else:
                    command.append(word.strip("()"))
    return commands


def synopsis_commands() -> list[list[str]]:
    """The usage lines of the README's text blocks: a `copyspec…` line and its indented
    continuation lines, as words."""
    commands: list[list[str]] = []
    for body in blocks("text"):
        for line in body.splitlines():
            if line.startswith(("copyspec ", "copyspec-lsp")):
                commands.append(line.split())
            elif line.startswith(" ") and commands:
                commands[-1].extend(line.split())
    return commands


def parser_for(words: list[str]) -> argparse.ArgumentParser:
    tool = TOOLS[words[0]]
    if tool == "copyspec-lsp":
        return lsp_parser()
    parser = copyspec_parser()
    for word in words[1:]:  # `copyspec bench replay …`: descend while a word names a subcommand
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or word not in sub.choices:
            break
        parser = sub.choices[word]
    return parser


def check_flags(words: list[str]) -> None:
    parser = parser_for(words)
    options = parser._option_string_actions
    for i, word in enumerate(words):
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", word):
            assert flag in options, f"{' '.join(words[:2])}: no flag {flag} ({word!r})"
            action = options[flag]
            value = words[i + 1] if i + 1 < len(words) and word == flag else None
            if action.choices and value and value.isidentifier():
                assert value in action.choices, f"{flag} {value}: not one of {action.choices}"


def test_every_readme_command_names_real_flags_and_files() -> None:
    commands = shell_commands()
    assert any(c[:2] == ["bash", "scripts/setup.sh"] for c in commands)
    for words in commands:
        head = words[0]
        if head in TOOLS:
            check_flags(words)
        elif head == "bash":
            assert (ROOT / words[1]).is_file(), words
        elif head == "cd":
            assert (ROOT / words[1]).is_dir(), words
        else:
            assert head in FOREIGN, f"a README command nobody checks: {' '.join(words)}"


def test_the_command_synopsis_matches_the_parsers() -> None:
    synopses = synopsis_commands()
    assert {tuple(s[:2]) for s in synopses} >= {("copyspec", "generate"), ("copyspec", "bench")}
    for words in synopses:
        check_flags(words)


def test_relative_links_resolve() -> None:
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            path = (page.parent / target).resolve()
            assert path.exists(), f"{page.name}: broken link {target}"


def test_the_protocol_names_every_custom_method_and_command_of_the_server() -> None:
    in_code = {
        node.value
        for path in (ROOT / "copyspec_lsp").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and CUSTOM_NAME.fullmatch(node.value)
    }
    documented = set(re.findall(rf"`({CUSTOM_NAME.pattern})`", PROTOCOL.read_text("utf-8")))
    assert {"copyspec/refine", "copyspec/chunk", "copyspec.cancel"} <= in_code
    assert documented == in_code, (documented - in_code, in_code - documented)


def test_the_readme_summarises_the_protocol_and_links_to_it() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Protocol\n", 1)[1].split("\n## ", 1)[0]
    assert "(docs/protocol.md)" in section
    assert len(section.strip().splitlines()) <= 12, "the contract itself lives in docs/protocol.md"


def resolve(dotted: str) -> object:
    """The object a dotted name names: the longest importable module, then its attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            found: object = importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name is not None and module.startswith(error.name):
                continue
            raise
        for attribute in parts[cut:]:
            assert hasattr(found, attribute), f"design.md: {dotted}: no {attribute}"
            found = getattr(found, attribute)
        return found
    raise AssertionError(f"design.md: {dotted}: no such module")


def test_every_path_and_name_in_the_design_notes_exists() -> None:
    ticked = TICKED.findall(DESIGN.read_text(encoding="utf-8"))
    paths = [t for t in ticked if re.fullmatch(r"[\w./-]+", t) and t.endswith((".py", "/"))]
    assert len(paths) >= 40, paths
    missing = [path for path in paths if not (ROOT / path).exists()]
    assert not missing, f"design.md names files that do not exist: {missing}"
    names = [t for t in ticked if DOTTED.fullmatch(t)]
    assert len(names) >= 10, names
    for name in names:
        resolve(name)


def test_the_design_notes_list_every_module() -> None:
    """Each module (a file, or a subpackage as a folder) has a row of its own in a table."""
    rows = {cell for line in DESIGN.read_text(encoding="utf-8").splitlines()
            if line.startswith("| `") for cell in TICKED.findall(line.split("|")[1])}
    for package in ("engine", "copyspec_lsp"):
        for path in sorted((ROOT / package).iterdir()):
            if path.name.startswith(("_", ".")) or path.suffix not in (".py", ""):
                continue
            name = f"{package}/{path.name}" + ("/" if path.is_dir() else "")
            assert name in rows, f"docs/design.md has no row for `{name}`"


def design_defaults() -> list[tuple[str, str]]:
    """(value, dotted name) for each row of design.md's table of defaults."""
    lines = DESIGN.read_text(encoding="utf-8").split(DEFAULTS_MARK, 1)[1].splitlines()[1:]
    rows = []
    for line in lines[2:]:  # after the header and the separator
        if not line.startswith("|"):
            break
        cells = [TICKED.findall(cell) for cell in line.strip("|").split("|")]
        rows.append((cells[1][0], cells[2][0]))
    return rows


def test_the_defaults_in_the_design_notes_are_the_codes() -> None:
    rows = design_defaults()
    assert len(rows) >= 10, rows
    for value, name in rows:
        assert ast.literal_eval(value) == resolve(name), f"design.md: {name} is not {value}"


def run_as_written(line: str) -> subprocess.CompletedProcess[str]:
    """A README command line through bash, with `.venv/bin/copyspec…` meaning this checkout."""
    py = shlex.quote(sys.executable)
    line = re.sub(r"(?:\.venv/bin/)?copyspec-lsp\b", f"{py} -m copyspec_lsp", line)
    line = re.sub(r"(?:\.venv/bin/)?copyspec\b(?![-_])", f"{py} -m engine.cli", line)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(["bash", "-c", line], cwd=ROOT, capture_output=True, text=True,
                          timeout=280, env=env)


def readme_line(prefix: str) -> str:
    return next(line for body in blocks("bash") for line in body.splitlines()
                if line.startswith(prefix))


@pytest.mark.slow
def test_the_quick_start_runs_as_written_and_prints_only_answers_and_stats() -> None:
    done = run_as_written(readme_line(".venv/bin/copyspec generate --chat-file"))
    assert done.returncode == 0, done.stderr
    headers = [line for line in done.stdout.splitlines() if line.startswith("── turn ")]
    assert len(headers) == 3, done.stdout
    stats = done.stderr.splitlines()
    assert len(stats) == 3 and all(line.startswith("[") for line in stats), done.stderr


@pytest.mark.slow
def test_the_prompt_example_and_the_version_run() -> None:
    done = run_as_written(readme_line(".venv/bin/copyspec generate --prompt"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and done.stderr.startswith("["), done.stderr
    version = run_as_written(readme_line("copyspec-lsp --version"))
    assert version.returncode == 0 and version.stdout.startswith("copyspec-lsp "), version
