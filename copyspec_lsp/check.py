"""The optional check command of the fix loop: an argument list, never a shell string.

The document (with the attempt applied) is written to a temp file whose path replaces
`{file}` in the arguments; the command runs in the workspace root with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

MAX_ERROR_LINES = 20


class CheckCommandError(RuntimeError):
    """The check command itself could not run (not found, not executable)."""


@dataclass
class CheckResult:
    """Whether an attempt passed, and the error lines the model gets back if it did not."""

    ok: bool
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "errors": self.errors}


async def run_check_command(
    argv: Sequence[str], text: str, filename: str, cwd: str | None, timeout: float
) -> CheckResult:
    """Run the command on a temp copy of the document; exit status 0 passes."""
    with tempfile.TemporaryDirectory(prefix="copyspec-check-") as folder:
        path = Path(folder) / (Path(filename).name or "document")
        path.write_text(text, encoding="utf-8", newline="")
        args = [arg.replace("{file}", str(path)) for arg in argv]
        try:
            process = await asyncio.create_subprocess_exec(
                *args,
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as error:
            raise CheckCommandError(f"check command {argv[0]!r} could not run: {error}") from error
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            return CheckResult(False, [f"the check command timed out after {timeout:g} s"])
        if process.returncode == 0:
            return CheckResult(True)
        lines = output.decode("utf-8", "replace").replace(str(path), filename).splitlines()
        errors = [line for line in lines if line.strip()][-MAX_ERROR_LINES:]
        return CheckResult(False, errors or [f"the check command exited with {process.returncode}"])
