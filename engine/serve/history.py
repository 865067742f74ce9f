"""One served session: its KV cache and index, plus the exact token ids of its history.

A client sends the whole conversation each turn, so the answer it echoes back is text. Turning
that text into tokens again need not give the ids the model generated (vLLM re-prefilled ~70
tokens a turn for that reason). Here the session remembers the text its tokens spell; when the
new conversation extends that text, only the extension is tokenized and every generated id is
kept as it was, so the cache stays valid up to the new message.

It is a chat session like any other (`engine.session.ChatSession`): the service sets its
`messages` to the history the client sent and `send`s the last message.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from engine.chat import render_text
from engine.config import SamplingConfig, SpecConfig
from engine.detokenize import TextStream
from engine.loading import LoadedModel
from engine.schedule import Acceptance
from engine.sequence import SequenceState
from engine.serve.protocol import PREDICTION, BadRequest
from engine.session import OnText, TurnResult, turn_rules
from engine.session_cache import state_bytes
from engine.stats import TurnStats
from engine.turn import draft_state, run_turn


class ServedSession:
    """State of one `x-session-id`; used only from the service's engine thread."""

    def __init__(self, lm: LoadedModel, spec: SpecConfig, draft: LoadedModel | None,
                 acceptance: Acceptance | None = None) -> None:
        self.lm = lm
        self.spec = spec
        self.state = SequenceState(lm.model, spec.gamma, spec.policy)
        self.draft_state = draft_state(lm, spec, draft)
        self.acceptance = acceptance if acceptance is not None else Acceptance()
        """How drafts fared in this conversation, kept across its requests for the draft-length
        chooser (the service seeds it from its running estimate over all sessions)."""
        self.messages: list[dict[str, str]] = []
        """The history the next turn follows (the service sets the client's before a turn)."""
        self.text = ""
        """The conversation so far as text, ending with the last answer..."""
        self.ids: list[int] = []
        """...and the token ids that spell it, generated ids verbatim."""
        self.turns = 0
        self.last_stats: TurnStats | None = None
        self.carried = 0
        """How many of the last turn's prompt ids were carried over without tokenizing."""

    def prompt(self, messages: Sequence[dict[str, str]]) -> tuple[list[int], int]:
        """The turn's prompt ids and how many of them were carried over without tokenizing."""
        text = render_text(self.lm.tokenizer, messages)
        if self.ids and text.startswith(self.text):
            rest = self.lm.tokenizer(text[len(self.text) :], add_special_tokens=False)
            return [*self.ids, *rest["input_ids"]], len(self.ids)
        return self.lm.tokenizer(text, add_special_tokens=False)["input_ids"], 0

    def predicted(self, text: str | None) -> list[int]:
        """The token ids of a request's predicted output. One longer than the model's context
        window is refused: no answer could use the rest of it."""
        if not text:
            return []
        ids = self.lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        window = self.lm.context_window
        if window is not None and len(ids) > window:
            raise BadRequest(f"'prediction' is {len(ids)} tokens; the model takes at most "
                             f"{window} (its window)", PREDICTION)
        return ids

    def send(
        self,
        message: str,
        max_new_tokens: int = 256,
        sampling: SamplingConfig | None = None,
        stop_strings: Sequence[str] = (),
        stop_event: threading.Event | None = None,
        on_text: OnText | None = None,
        prediction: Sequence[int] = (),
        stats: TurnStats | None = None,
    ) -> TurnResult:
        """Answer `message` after `messages`, carrying over the ids of the history this
        session generated (`carried`); a finished turn extends the exact history. The
        `prediction`'s ids lead the copy proposer and never change the answer; `stats`: the
        turn's live figures, for a caller that reads them while it runs."""
        messages = [*self.messages, {"role": "user", "content": message}]
        ids, self.carried = self.prompt(messages)
        stream = TextStream(self.lm.tokenizer)
        rules = turn_rules(self.lm, len(ids), max_new_tokens, stream, stop_strings, stop_event)
        stats = stats if stats is not None else TurnStats()

        def on_tokens(new_ids: list[int]) -> None:
            delta = stream.push(new_ids)
            if delta and on_text is not None:
                on_text(delta, stats)

        tokens, stats = run_turn(
            self.state, ids, self.lm, self.spec, rules, sampling, on_tokens, self.draft_state,
            stats, prediction, self.acceptance,
        )
        tail = stream.finish()
        if tail and on_text is not None:
            on_text(tail, stats)
        self.last_stats = stats
        if not stats.cancelled:
            self.turns += 1
            spoken = tokens[:-1] if tokens and tokens[-1] in self.lm.eos_token_ids else tokens
            # The streamed text skips special tokens, so the EOS id (if any) is left out of the
            # pair; the template's own end-of-turn text is tokenized back to it next turn.
            self.text = render_text(self.lm.tokenizer, messages) + stream.text
            self.ids = [*ids, *spoken]
            self.messages = [*messages, {"role": "assistant", "content": stream.text}]
        return TurnResult(stream.text, tokens, stats, ids)

    def nbytes(self) -> int:
        """Memory held by the session's caches and history (the LRU's measure)."""
        return state_bytes(self.state, self.draft_state)
