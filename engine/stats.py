"""Per-turn counters, gathered as the loop runs and never recomputed afterwards."""

from __future__ import annotations

from dataclasses import asdict, dataclass

SPECULATION_ON = "on"
SPECULATION_OFF = "off"
SPECULATION_RECURRENT = "off (recurrent cache)"
"""`TurnStats.speculation`: proposals verified; method greedy; refused by the model's cache."""


@dataclass
class TurnStats:
    """What one turn cost and what speculation bought. Seconds are wall-clock."""

    new_tokens: int = 0
    forward_passes: int = 0
    """Verify steps, one per decoding step; the first one reads the prefill's logits, so plain
    decoding costs exactly one pass per new token, as `generate` does."""
    copy_attempts: int = 0
    copied_tokens: int = 0
    draft_attempts: int = 0
    drafted_tokens: int = 0
    draft_forward_passes: int = 0
    proposed_tokens: int = 0
    """Tokens verified beyond each pass's own one (copied or drafted, accepted or not): the
    width the passes paid for."""
    held_back: int = 0
    """Passes that verified nothing although a candidate was proposed: no length of it was
    worth its pass on this device (`engine.schedule.DraftChooser`)."""
    accepted_prediction_tokens: int = 0
    """Tokens copied from the request's predicted output that the output kept (OpenAI's
    `usage.completion_tokens_details` field; `engine.prediction`)..."""
    rejected_prediction_tokens: int = 0
    """...and those verified but thrown away: rejected, or past the turn's stop."""
    prefill_tokens: int = 0
    reused_tokens: int = 0
    cache_reused: bool = False
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    time_to_first_token: float = 0.0
    cancelled: bool = False
    stop_reason: str = ""
    speculation: str = SPECULATION_ON

    @property
    def tau(self) -> float:
        """Accepted copied tokens per copy attempt (the paper's τ)."""
        return self.copied_tokens / self.copy_attempts if self.copy_attempts else 0.0

    @property
    def draft_tau(self) -> float:
        """Accepted draft tokens per draft attempt (τ₂)."""
        return self.drafted_tokens / self.draft_attempts if self.draft_attempts else 0.0

    @property
    def copied_share(self) -> float:
        """Share of generated tokens that came from accepted copies."""
        return self.copied_tokens / self.new_tokens if self.new_tokens else 0.0

    @property
    def passes_per_token(self) -> float:
        """Target forward passes per generated token; 1.0 is plain decoding."""
        return self.forward_passes / self.new_tokens if self.new_tokens else 0.0

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of decoding, prefill excluded."""
        return self.new_tokens / self.decode_seconds if self.decode_seconds else 0.0

    def to_dict(self) -> dict[str, float | int | bool | str]:
        derived = {
            "tau": self.tau,
            "draft_tau": self.draft_tau,
            "copied_share": self.copied_share,
            "passes_per_token": self.passes_per_token,
            "tokens_per_second": self.tokens_per_second,
        }
        return {**asdict(self), **derived}
