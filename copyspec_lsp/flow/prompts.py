"""LSP diagnostics as a fix request in the engine's prompt format (`engine/prompt_format.py`)."""

from __future__ import annotations

from collections.abc import Sequence

from lsprotocol import types

from engine.prompt_format import fix_request


def fix_instruction(
    diagnostics: Sequence[types.Diagnostic], first_line: int, instruction: str = ""
) -> str:
    """Diagnostics as the fix request; their lines count from the region's first line."""
    errors = []
    for diagnostic in diagnostics:
        line = diagnostic.range.start.line - first_line + 1
        where = f" (line {line})" if line >= 1 else ""
        errors.append(f"{diagnostic.message.strip()}{where}")
    return "\n".join(part for part in (fix_request(errors), instruction.strip()) if part)
