"""The optional check command of the fix loop: an argument list, never a shell string.

The document (with the attempt applied) is written to a temp file whose path replaces
`{file}` in the arguments; the command runs in the workspace root with a timeout. It runs in
a process group of its own, so the timeout (and the server's exit) kills its children too, and
its output is capped in bytes as well as lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

MAX_ERROR_LINES = 20
MAX_OUTPUT_BYTES = 64 * 1024
"""Output kept from the check command (the rest is read and dropped)."""
MAX_NAME_BYTES = 200
RUNNING: set[int] = set()
"""Process groups of the check commands still running (killed when the server ends)."""


class CheckCommandError(RuntimeError):
    """The check command itself could not run (not found, not executable, bad file name)."""


@dataclass
class CheckResult:
    """Whether an attempt passed, and the error lines the model gets back if it did not."""

    ok: bool
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "errors": self.errors}


def file_name(uri: str) -> str:
    """The document's file name for the temp copy; CheckCommandError if it cannot be one."""
    name = unquote(urlparse(uri).path).rsplit("/", 1)[-1]
    if name in ("", ".", ".."):
        return "document"
    if "\0" in name or "\\" in name:
        raise CheckCommandError(f"the document's file name {name[:60]!r} cannot be written "
                                "to disk for the check command")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise CheckCommandError(f"the document's file name is longer than {MAX_NAME_BYTES} bytes, "
                                "too long for the check command's temp copy")
    return name


async def run_check_command(
    argv: Sequence[str], text: str, uri: str, cwd: str | None, timeout: float
) -> CheckResult:
    """Run the command on a temp copy of the document `uri`; exit status 0 passes."""
    filename = file_name(uri)
    with tempfile.TemporaryDirectory(prefix="copyspec-check-") as folder:
        path = Path(folder) / filename
        try:
            path.write_text(text, encoding="utf-8", errors="surrogatepass", newline="")
        except OSError as error:
            raise CheckCommandError(
                f"the temp copy {filename!r} for the check command could not be written: "
                f"{error.strerror}"
            ) from None
        args = [arg.replace("{file}", str(path)) for arg in argv]
        try:
            process = await asyncio.create_subprocess_exec(
                *args,
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            raise CheckCommandError(
                f"check command {argv[0]!r} could not run: {error.strerror or error}"
            ) from None
        RUNNING.add(process.pid)
        try:
            assert process.stdout is not None
            output = await asyncio.wait_for(_read_capped(process.stdout), timeout)
            await asyncio.wait_for(process.wait(), timeout)
        except asyncio.TimeoutError:
            return CheckResult(False, [f"the check command timed out after {timeout:g} s"])
        finally:
            _kill_group(process.pid)
            RUNNING.discard(process.pid)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        if process.returncode == 0:
            return CheckResult(True)
        lines = output.decode("utf-8", "replace").replace(str(path), filename).splitlines()
        errors = [line[:500] for line in lines if line.strip()][-MAX_ERROR_LINES:]
        return CheckResult(False, errors or [f"the check command exited with {process.returncode}"])


async def _read_capped(stream: asyncio.StreamReader) -> bytes:
    """Everything up to the end, keeping the last MAX_OUTPUT_BYTES (errors come last)."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        kept += chunk
        if len(kept) > 2 * MAX_OUTPUT_BYTES:
            del kept[:-MAX_OUTPUT_BYTES]
    return bytes(kept[-MAX_OUTPUT_BYTES:])


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def kill_check_commands() -> None:
    """Kill every check command still running, children included (the server is ending)."""
    for pid in list(RUNNING):
        _kill_group(pid)
    RUNNING.clear()
