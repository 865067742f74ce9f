"""The prompt format: the one definition of what the model is told and how code is shown.

The built-in model was trained on exactly these strings (`engine/training/data.py` builds its
conversations from them), and the CLI and the server send them, so the model sees at use what
it saw in training: a system turn, a user turn holding the code in a fenced block and the
instruction, and an assistant turn that is the edited code in a fenced block. Follow-ups carry
the instruction alone; fixes say "Fix this error: ..." or, after a failed attempt,
"That fails with: ...\\nPlease fix it.".
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

SYSTEM_PROMPTS = (
    "You are a coding assistant. Reply with the complete edited code only.",
    "You are a helpful assistant that edits code. Answer with the full updated code.",
    "You edit Python code exactly as asked and return the whole result.",
)
"""The system prompts the built-in model was trained with (training picks one at random)."""
SYSTEM_PROMPT = SYSTEM_PROMPTS[0]
"""The system prompt sent at use; a fine default for any instruct model too."""

FIX_ASK = "Fix this error: "
FIX_ASKS = (FIX_ASK, "Fix this error:\n")
"""How a fix request opens (training varies the separator; use sends the first)."""
FAILURE = "That fails with: {errors}\nPlease fix it."
"""What a failed attempt says to the model, as the next turn of the same session."""

FENCE_TAGS = {"typescriptreact": "tsx", "javascriptreact": "jsx", "plaintext": ""}
"""Fence info strings for LSP language ids that are not themselves the usual tag."""


def fence(code: str, language_id: str = "python") -> str:
    """Code as a fenced block tagged with its language: prompts and answers use this form.

    The fence is longer than any backtick run opening a line of the code (CommonMark), so a
    ``` line inside a docstring cannot close it; the model tends to answer in kind."""
    runs = [len(line) - len(line.lstrip("`")) for line in code.replace(" ", "").split("\n")]
    ticks = "`" * (max(runs) + 1 if max(runs) >= 3 else 3)
    return f"{ticks}{FENCE_TAGS.get(language_id, language_id)}\n{code}\n{ticks}"


def edit_request(
    code: str, instruction: str, language_id: str = "python", instruction_first: bool = False
) -> str:
    """The first user turn: the code then what to do with it (or, a training variant, the
    instruction first)."""
    if instruction_first:
        return f"{instruction.strip()}\n{fence(code, language_id)}"
    return f"{fence(code, language_id)}\n{instruction.strip()}"


def fix_request(errors: Sequence[str], ask: str = FIX_ASK) -> str:
    """The errors to fix, one a line, as a request ("" when there are none)."""
    return ask + "\n".join(errors) if errors else ""


def failure_message(errors: Sequence[str]) -> str:
    """The next turn after an attempt that fails its check."""
    return FAILURE.format(errors="\n".join(errors))


def dedent(code: str) -> tuple[str, str]:
    """The code without its common indentation (and with LF line breaks), and that indent:
    snippets are shown dedented, as in training, and the indent is restored on the answer."""
    code = code.replace("\r\n", "\n")
    dedented = textwrap.dedent(code)
    for before, after in zip(code.split("\n"), dedented.split("\n"), strict=True):
        if after.strip():
            return dedented, before[: len(before) - len(after)]
    return dedented, ""
