"""The prompt format, defined once: what the built-in model is trained on, and what the CLI,
the server and the bench send. Torch-free.

A session is a system turn, then a user turn holding the code in a fenced block followed by the
instruction; the assistant answers with the edited code in a fenced block. Fixes say
"Fix this error: …"; a failed attempt comes back as "That fails with: …\\nPlease fix it.".
"""

from __future__ import annotations

from collections.abc import Sequence

SYSTEM_PROMPT = "You are a coding assistant. Reply with the complete edited code only."
FIX_ERROR = "Fix this error: "


def fence(code: str, tag: str = "python") -> str:
    """Code as a fenced block tagged with its language."""
    return f"```{tag}\n{code}\n```"


def edit_request(code: str, instruction: str, tag: str = "python") -> str:
    """The first user turn of a session: the code, then what to do with it."""
    return f"{fence(code, tag)}\n{instruction.strip()}"


def failure_message(errors: Sequence[str]) -> str:
    """What a failed check says to the model, as the next turn of the same session."""
    return "That fails with: " + "\n".join(errors) + "\nPlease fix it."
