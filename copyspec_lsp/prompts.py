"""The conversation the model sees, in the built-in model's training format.

`engine/training/data.py` trains on: a system turn, then a user turn holding the code in a
fenced block followed by the instruction, and an assistant turn that is the edited code in a
fenced block. Snippets are dedented; follow-ups carry the instruction alone, and fixes say
"Fix this error: ..." or, after a failed attempt, "That fails with: ...\nPlease fix it.".
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from lsprotocol import types

SYSTEM_PROMPT = "You are a coding assistant. Reply with the complete edited code only."
FENCE_TAGS = {"typescriptreact": "tsx", "javascriptreact": "jsx", "plaintext": ""}


def fence(code: str, language_id: str) -> str:
    """Code as a fenced block tagged with its language, as the training data shows it."""
    return f"```{FENCE_TAGS.get(language_id, language_id)}\n{code}\n```"


def dedent(code: str) -> tuple[str, str]:
    """The code without its common indentation (and with LF line breaks), and that indent."""
    code = code.replace("\r\n", "\n")
    dedented = textwrap.dedent(code)
    for before, after in zip(code.split("\n"), dedented.split("\n"), strict=True):
        if after.strip():
            return dedented, before[: len(before) - len(after)]
    return dedented, ""


def edit_request(code: str, instruction: str, language_id: str) -> str:
    """The first user turn of a session: the code, then what to do with it."""
    return f"{fence(code, language_id)}\n{instruction.strip()}"


def fix_instruction(
    diagnostics: Sequence[types.Diagnostic], first_line: int, instruction: str = ""
) -> str:
    """Diagnostics as the fix request; their lines count from the region's first line."""
    lines = []
    for diagnostic in diagnostics:
        line = diagnostic.range.start.line - first_line + 1
        where = f" (line {line})" if line >= 1 else ""
        lines.append(f"{diagnostic.message.strip()}{where}")
    ask = "Fix this error: " + "\n".join(lines) if lines else ""
    return "\n".join(part for part in (ask, instruction.strip()) if part)


def failure_message(errors: Sequence[str]) -> str:
    """What a failed check says to the model, as the next turn of the same session."""
    return "That fails with: " + "\n".join(errors) + "\nPlease fix it."
