"""The conversation the model sees, in the format `engine.prompts` defines (the built-in
model's training format), from editor regions: snippets are dedented, fences tagged with the
document's language, and diagnostics become the fix request."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from lsprotocol import types

from engine import prompts
from engine.prompts import SYSTEM_PROMPT as SYSTEM_PROMPT
from engine.prompts import failure_message as failure_message

FENCE_TAGS = {"typescriptreact": "tsx", "javascriptreact": "jsx", "plaintext": ""}


def fence(code: str, language_id: str) -> str:
    """Code as a fenced block tagged with its language, as the training data shows it."""
    return prompts.fence(code, FENCE_TAGS.get(language_id, language_id))


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
    return prompts.edit_request(code, instruction, FENCE_TAGS.get(language_id, language_id))


def fix_instruction(
    diagnostics: Sequence[types.Diagnostic], first_line: int, instruction: str = ""
) -> str:
    """Diagnostics as the fix request; their lines count from the region's first line."""
    lines = []
    for diagnostic in diagnostics:
        line = diagnostic.range.start.line - first_line + 1
        where = f" (line {line})" if line >= 1 else ""
        lines.append(f"{diagnostic.message.strip()}{where}")
    ask = prompts.FIX_ERROR + "\n".join(lines) if lines else ""
    return "\n".join(part for part in (ask, instruction.strip()) if part)
