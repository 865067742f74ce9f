"""What one refine or fix may touch, and nothing else of the server.

The handlers build a `FlowContext` per request from their state; the flow reads documents and
conversations, runs turns through the model host, and talks to the editor only through the
client port, so it can change without the handlers, and the handlers without it.
"""

from __future__ import annotations

from dataclasses import dataclass

from copyspec_lsp.adapters.client import Client
from copyspec_lsp.adapters.conversations import Conversations
from copyspec_lsp.adapters.documents import Documents
from copyspec_lsp.adapters.gate import StreamGate
from copyspec_lsp.adapters.model_host import ModelHost
from copyspec_lsp.adapters.requests import Request
from copyspec_lsp.adapters.settings import Settings


@dataclass(frozen=True)
class FlowContext:
    """The narrow context of a refine or fix request."""

    documents: Documents
    conversations: Conversations
    running: list[Request]
    """The requests in progress: a new one supersedes one on an overlapping region, and each
    is here while it runs, so a cancel or shutdown can find it."""
    model: ModelHost
    settings: Settings
    """The settings when the request arrived: one request runs with one configuration."""
    client: Client
    root: str | None = None
    """The workspace root, where a check command runs."""
    gate: StreamGate | None = None
    """Only in tests (`gate.py`)."""
