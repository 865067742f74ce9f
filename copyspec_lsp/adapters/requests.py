"""A refine/fix request while it runs: the region it rewrites, and how it is stopped.

Whoever stops it calls `cancel` with a reason: the user (`$/cancelRequest`, the progress bar,
`copyspec.cancel`) or the server itself (typing inside the region, a newer request for the same
region, an edit the editor refused, shutdown). The running engine turn stops within one step
and the request fails with that reason, as RequestCancelled or ServerCancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from copyspec_lsp.adapters.documents import Region
from engine.engine_thread import Job


class RequestError(ValueError):
    """A request that cannot be served as asked (unknown document, empty instruction, …)."""


@dataclass(eq=False)
class Request:
    """A refine/fix request in progress: what it rewrites and how to stop it."""

    uri: str
    session: str
    region: Region
    msg_id: int | str | None = None
    """The JSON-RPC id of the request, for `$/cancelRequest`."""
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

    async def unless_stopped(self, waiting: Awaitable[Any]) -> Any:
        """`waiting`'s result, unless the request stops first: then RequestCancelled (and a
        coroutine's task is cancelled; a future, such as an unanswered applyEdit, is left for
        its answer to arrive)."""
        owned = asyncio.iscoroutine(waiting)
        answer = asyncio.ensure_future(waiting)
        halted = asyncio.ensure_future(self.halted.wait())
        try:
            await asyncio.wait({answer, halted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            halted.cancel()
        if not answer.done():
            if owned:
                answer.cancel()
            raise self.cancelled()
        return answer.result()

    def cancelled(self) -> RequestCancelled:
        """The exception that ends the request now that it is stopped."""
        return RequestCancelled(self.stopped, self.by_server)

    def overlaps(self, uri: str, start: int, end: int) -> bool:
        region = self.region
        if uri != self.uri:
            return False
        return (start < region.end and region.start < end) or (start, end) == (
            region.start,
            region.end,
        )


class RequestCancelled(Exception):
    """The request was stopped, by the user or (`by_server`) by the server itself."""

    def __init__(self, reason: str, by_server: bool) -> None:
        super().__init__(reason)
        self.by_server = by_server
