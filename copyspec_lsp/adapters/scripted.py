"""A test-only scripted answer: a file's text stands in for the model's, streamed the real way.

Tests of hunk-by-hunk review need an answer that differs from the original in known places, and
the README's screenshots need one that reads like a real refinement; the tiny test models answer
gibberish. So the server honours a scripted answer, the way it honours the test gate (gate.py):
started with COPYSPEC_TEST_ANSWER=<path> in its environment, then while that file exists every
turn answers the file's text instead of decoding, in token-sized pieces paced like a model
(STEP_SECONDS each), through the same path as the model's text: the job's events, the answer
shaping, the streamed edits, the gate, the session's history. The model is still loaded and the
conversation opened; only the decoding is skipped, so the figures count pieces, copy nothing
and time the pacing. Without the variable (always, outside tests) nothing here runs.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from engine.session import ChatSession, TurnResult
from engine.stats import TurnStats

ANSWER_VARIABLE = "COPYSPEC_TEST_ANSWER"
STEP_SECONDS = 0.01
"""Seconds per piece: slow enough that a test sees the answer stream, fast enough to wait for."""
PIECE = re.compile(r"\s*\S{1,4}|\s+")
"""Token-sized pieces: up to four characters with the white space before them."""


def scripted_answer() -> str | None:
    """The scripted answer's text while its file exists, else None (always, outside tests)."""
    path = os.environ.get(ANSWER_VARIABLE)
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


class ScriptedTurn:
    """Stands in for a session's `send` for one turn, answering `text`."""

    def __init__(self, session: ChatSession, text: str) -> None:
        """`session`: the chat session it stands in for; only its history is updated."""
        self.session = session
        self.text = text

    def send(
        self,
        message: str,
        max_new_tokens: int = 256,
        stop_event: threading.Event | None = None,
        on_text: Callable[[str, TurnStats], None] | None = None,
    ) -> TurnResult:
        """Stream the text piece by piece (at most `max_new_tokens` pieces); like a session,
        the turn joins the history unless it was cancelled."""
        stop = stop_event or threading.Event()
        stats = TurnStats(stop_reason="eos")
        started = time.perf_counter()
        pieces: list[str] = []
        for piece in PIECE.findall(self.text):
            if len(pieces) == max_new_tokens:
                stats.stop_reason = "length"
                break
            if stop.wait(STEP_SECONDS):
                stats.cancelled, stats.stop_reason = True, "cancelled"
                break
            pieces.append(piece)
            stats.new_tokens = stats.forward_passes = len(pieces)
            stats.decode_seconds = time.perf_counter() - started
            if on_text is not None:
                on_text(piece, stats)
        text = "".join(pieces)
        if not stats.cancelled:
            self.session.messages = [
                *self.session.messages,
                {"role": "user", "content": message},
                {"role": "assistant", "content": text},
            ]
        return TurnResult(text, [], stats)
