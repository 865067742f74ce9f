"""The vLLM custom_class proposer proposes exactly what the engine's own index ("recent"
policy) proposes, and answers vLLM's batch call by row (vLLM itself cannot run in the tests:
it needs its own venv)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.index import NgramIndex
from engine.vllm.recent_proposer import RecentMatchProposer, most_recent_continuation

pytestmark = pytest.mark.timeout(60)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=60), st.integers(1, 4),
       st.integers(1, 12))
def test_matches_the_engines_recent_index(tokens: list[int], gamma: int, k: int) -> None:
    index = NgramIndex(gamma, "recent")
    index.extend(tokens)
    assert most_recent_continuation(np.array(tokens), gamma, k) == index.lookup(k)


def test_batch_rows_and_skipped_rows() -> None:
    config = SimpleNamespace(speculative_config=SimpleNamespace(num_speculative_tokens=4),
                             model_config=SimpleNamespace(max_model_len=64))
    proposer = RecentMatchProposer(config)
    rows = np.zeros((3, 64), dtype=np.int64)
    rows[0, :9] = [1, 2, 3, 7, 8, 9, 1, 2, 3]
    rows[1, :5] = [5, 6, 7, 8, 9]
    rows[2, :4] = [1, 1, 1, 1]
    drafts = proposer.propose([[3], [9], []], np.array([9, 5, 4]), rows)
    assert drafts == [[7, 8, 9, 1], [], []], "row 2 sampled nothing: no proposal"
