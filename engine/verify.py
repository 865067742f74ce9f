"""Acceptance rules that keep speculation lossless.

Greedy: accept the longest prefix of the proposal equal to the argmax, then the argmax itself.
Sampling: the speculative-sampling rule. Accept proposed x with probability min(1, p(x)/q(x))
and on rejection draw from norm(max(0, p - q)); a one-hot draft (a copy) has q(x) = 1, so the
rule becomes "accept with p(x), else draw from p with x removed". Both need one host sync.
"""

from __future__ import annotations

import torch

from engine.sampling import Sampler


def accept_greedy(logits: torch.Tensor, proposal: list[int]) -> tuple[int, int]:
    """(accepted proposal tokens, the model's own next token) under argmax decoding."""
    choices = logits.argmax(-1).tolist()
    accepted = 0
    while accepted < len(proposal) and proposal[accepted] == choices[accepted]:
        accepted += 1
    return accepted, choices[accepted]


def accept_sampled(
    logits: torch.Tensor,
    proposal: list[int],
    sampler: Sampler,
    draft_probs: torch.Tensor | None = None,
) -> tuple[int, int]:
    """(accepted proposal tokens, next token) drawn so the output follows the target's law."""
    p = sampler.probs(logits)
    k = len(proposal)
    device = p.device
    proposed = torch.tensor(proposal, dtype=torch.long, device=device)
    rows = torch.arange(k, device=device)
    p_x = p[rows, proposed]
    if draft_probs is None:
        accept_prob = p_x
        residual = p[:k].clone()
        residual[rows, proposed] = 0.0
    else:
        q = draft_probs.to(p.dtype)
        accept_prob = torch.clamp(p_x / q[rows, proposed], max=1.0)
        residual = torch.clamp(p[:k] - q, min=0.0)
    # Rows whose residual is empty are accepted with certainty, so their draw is never used.
    empty = residual.sum(-1, keepdim=True) <= 0
    residual = torch.where(empty, p[:k], residual)
    fallback = torch.cat([residual, p[k:]], dim=0)
    draws = sampler.draw(fallback)
    accepted_mask = sampler.uniform(k, device) < accept_prob
    accepted = torch.cumprod(accepted_mask.to(torch.long), 0).sum().view(1)
    accepted_count, *tokens = torch.cat([accepted, draws]).tolist()
    return accepted_count, tokens[accepted_count]
