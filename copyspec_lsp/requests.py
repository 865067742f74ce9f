"""A refine/fix request while it runs: the region it rewrites, and how it is stopped.

Whoever stops it calls `cancel` with a reason: the user (`$/cancelRequest`, the progress bar,
`copyspec.cancel`) or the server itself (typing inside the region, a newer request for the same
region, an edit the editor refused, shutdown). The running engine turn stops within one step
and the request fails with that reason, as RequestCancelled or ServerCancelled.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from copyspec_lsp.documents import Region
from copyspec_lsp.worker import Job


class JobError(ValueError):
    """A request that cannot be served as asked (unknown document, empty instruction, …)."""


@dataclass(eq=False)
class Request:
    """A refine/fix request in progress: what it rewrites and how to stop it."""

    uri: str
    session: str
    region: Region
    job: Job | None = None
    stopped: str = ""
    by_server: bool = False
    """Whether the server stopped it (answered as ServerCancelled, not RequestCancelled)."""
    halted: asyncio.Event = field(default_factory=asyncio.Event)
    """Set with `stopped`, to wake a wait on the client (an unanswered applyEdit)."""

    def cancel(self, reason: str, by_server: bool = False) -> None:
        """Stop it for `reason` (loop thread): the running turn stops within one step."""
        if not self.stopped:
            self.stopped = reason
            self.by_server = by_server
            self.halted.set()
            if self.job is not None:
                self.job.cancel(reason)

    def cancelled(self) -> JobCancelled:
        """The exception that ends the request now that it is stopped."""
        return JobCancelled(self.stopped, self.by_server)

    def overlaps(self, uri: str, start: int, end: int) -> bool:
        region = self.region
        if uri != self.uri:
            return False
        return (start < region.end and region.start < end) or (start, end) == (
            region.start,
            region.end,
        )


class JobCancelled(Exception):
    """The request was stopped, by the user or (`by_server`) by the server itself."""

    def __init__(self, reason: str, by_server: bool) -> None:
        super().__init__(reason)
        self.by_server = by_server
