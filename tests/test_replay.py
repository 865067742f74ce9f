"""The oracle replay: protocol invariants, the bounds, the peers' rules and --repo extraction;
then `bench replay --timed` and `bench costs` for real on the built-in model.

Everything here is built by the tests (token lists, a temp git repository, the built-in model
and tokenizer); the shared replay data is not needed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.bench.peers import (
    NO_LIMIT,
    CopySpecReference,
    HFPromptLookup,
    LlamaCppNgramSimple,
    Ours,
    VLLMNgram,
    arctic_available,
)
from engine.bench.replay import (
    Pair,
    bound_name,
    bound_passes,
    bound_results,
    replay,
    summarize,
)
from engine.bench.replay_cli import CHOSEN, OURS, WITHOUT_CARRY, check_vocabulary
from engine.bench.workloads import extract
from engine.cli import main
from engine.config import SpecConfig
from engine.costs import CostCurve
from engine.index import NgramIndex
from engine.options import UsageError
from engine.proposers import COPIED_ELSEWHERE, Indexed, Proposal, Proposer
from engine.proposers.copy import ResyncProposer

pytestmark = pytest.mark.timeout(120)


class Oracle:
    """Drafts the true next K tokens: the best any proposer with this K can do."""

    def __init__(self, target: list[int], context: int, k: int) -> None:
        self.name, self.target, self.context, self.k = "oracle", target, context, k

    def begin(self, pair_id: str, context: list[int]) -> None:
        pass

    def propose(self, tokens: list[int]) -> list[int]:
        done = len(tokens) - self.context
        return self.target[done : done + self.k]

    def feedback(self, drafted: list[int], accepted: int, emitted: list[int]) -> None:
        pass

    def end(self) -> None:
        pass


def test_protocol_counts_passes_from_accepted_plus_one() -> None:
    target = list(range(100, 150))
    pair = Pair("p", "w", 1, [1, 2, 3], target)
    assert replay(Oracle(target, 3, 9), pair).passes == 5  # 50 tokens, 10 per pass
    nothing = replay(Oracle([], 3, 0), pair)
    assert (nothing.passes, nothing.accepted, nothing.attempts) == (50, 0, 0)
    wrong = replay(Oracle([7] * 60, 3, 4), pair)
    assert (wrong.passes, wrong.accepted, wrong.attempts, wrong.drafted) == (50, 0, 50, 200)


def test_the_last_pass_is_capped_at_the_end_of_the_target() -> None:
    target = list(range(10))
    result = replay(Oracle(target + [99] * 20, 1, 30), Pair("p", "w", 1, [5], target))
    assert (result.passes, result.accepted, result.drafted) == (1, 10, 30)


def brute_force_bound(context: list[int], target: list[int], cap: int) -> int:
    """Fewest passes by dynamic programming over every choice of accepted length."""
    n = len(target)
    best = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        known = context + target[:i]
        run = 0
        while run < min(cap, n - i) and any(
            known[s : s + run + 1] == target[i : i + run + 1]
            for s in range(len(known) - run)
        ):
            run += 1
        best[i] = 1 + min(best[min(n, i + a + 1)] for a in range(run + 1))
    return best[0]


@settings(max_examples=150, deadline=None)
@given(context=st.lists(st.integers(0, 3), max_size=25),
       target=st.lists(st.integers(0, 3), min_size=1, max_size=25), cap=st.integers(1, 8))
def test_bound_is_the_optimum(context: list[int], target: list[int], cap: int) -> None:
    assert bound_passes(context, target, cap) == brute_force_bound(context, target, cap)


def test_exact_copy_costs_close_to_the_bound() -> None:
    rng = random.Random(0)
    code = [rng.randrange(10, 4000) for _ in range(600)]
    context, target = [1, 2, *code, 3, 4], code
    pair = Pair("p", "w", 1, context, target)
    assert bound_passes(context, target, 1 << 30) == 1
    ours = replay(Ours("ours", SpecConfig()), pair).passes
    assert ours <= 10, ours  # γ tokens to find the copy, then drafts doubling up to 256


def test_resync_recovers_from_a_substitution_without_waiting_gamma_tokens() -> None:
    rng = random.Random(1)
    code = [rng.randrange(10, 4000) for _ in range(400)]
    edited = [*code[:200], 5, *code[201:]]
    pair = Pair("p", "w", 1, [1, *code, 2], edited)
    resync = replay(Ours("resync", SpecConfig()), pair)
    longest = replay(Ours("longest", SpecConfig(policy="longest", block=10, max_block=64)), pair)
    exact = replay(Ours("resync", SpecConfig()), Pair("p", "w", 1, [1, *code, 2], code))
    assert resync.passes <= exact.passes + 3
    assert resync.passes < longest.passes


@pytest.mark.parametrize("user, assistant", [([7], [8]), ([7], [8, 9]), ([6, 7], [8])])
def test_an_answer_starts_on_the_code_after_the_users_header(user: list[int],
                                                              assistant: list[int]) -> None:
    """A chat's answer header differs from the user's by its role name (one or two tokens
    with a byte-level tokenizer): the first pass copies the code that followed the user's."""
    rng = random.Random(2)
    code = [rng.randrange(100, 4000) for _ in range(300)]
    start, end, newline = 1, 2, 3
    context = [start, *user, newline, *code, end, newline, start, *assistant, newline]
    first = drive(ResyncProposer(16, 256), context, code)[0]
    assert first[0].mode == "relabelled"
    assert first[1] == 16  # the whole first draft accepted
    # Its alignment, what the chooser trusts it by, counts the `start` token agreeing before the
    # role name as well as the newline after it.
    assert first[0].aligned == 2
    other = [rng.randrange(100, 4000) for _ in range(50)]
    stranger = [5, *code, end, newline, start, *assistant, newline]  # no header to relabel
    assert not drive(ResyncProposer(16, 256), stranger, other)[0][0].tokens


def test_a_short_deletion_resumes_after_it_at_once() -> None:
    """The token written where the source went on recurs 2 tokens ahead: the copy resumes there
    on the next pass instead of guessing a substitution."""
    rng = random.Random(3)
    code = [rng.randrange(100, 4000) for _ in range(200)]
    target = [*code[:100], *code[102:]]
    passes = drive(ResyncProposer(16, 256), [1, *code, 2], target)
    after = next(i for i, (p, a) in enumerate(passes) if a < len(p)) + 1
    assert passes[after][0].mode == "anchor"
    assert passes[after][1] > 0


def drive(proposer: Proposer, context: list[int], target: list[int],
          limit: int = NO_LIMIT, index: NgramIndex | None = None
          ) -> list[tuple[Proposal, int]]:
    """The replay's protocol through the engine's proposer interface: each pass's proposal
    (at most `limit` tokens, as a chooser would cut it) and how many of its tokens the target
    accepted, on `index` (which the proposer may read too: a prediction's) or a new one."""
    index = index if index is not None else NgramIndex(3, "resync")
    index.extend(context)
    done, passes = 0, []
    while done < len(target):
        proposal = proposer.propose(Indexed(index), limit)
        accepted = 0
        while (accepted < min(len(proposal), len(target) - done)
               and proposal.tokens[accepted] == target[done + accepted]):
            accepted += 1
        proposer.feedback(proposal, accepted)
        emitted = target[done : done + accepted + 1]
        index.extend(emitted)
        done += len(emitted)
        passes.append((proposal, accepted))
    return passes


def carried(passes: list[tuple[Proposal, int]]) -> tuple[int, int]:
    """Tokens of carried edits accepted, and passes that broke at one."""
    accepted = sum(p.origins[:a].count(COPIED_ELSEWHERE) for p, a in passes)
    broke = sum(a < len(p) and p.origins[a] == COPIED_ELSEWHERE for p, a in passes)
    return accepted, broke


def with_runs(rng: random.Random, runs: list[list[int]], gap: int = 40) -> list[int]:
    """Random code (ids 100-3999, no repeats to speak of) with each run placed `gap` apart."""
    code = []
    for run in runs:
        code += [rng.randrange(100, 4000) for _ in range(gap)] + run
    return code + [rng.randrange(100, 4000) for _ in range(gap)]


def rename_pair(seed: int, renamed: list[bool], old: list[int], new: list[int]
                ) -> tuple[list[int], list[int]]:
    """(context, target): code holding `old` at each place; the target writes `new` at the
    places `renamed` says, `old` at the others."""
    source = with_runs(random.Random(seed), [[-1]] * len(renamed))
    code = [t for t in source if t != -1]
    places = [i for i, t in enumerate(source) if t == -1]
    before, after = [], []
    for i, token in enumerate(source):
        if token == -1:
            number = places.index(i)
            before += old
            after += new if renamed[number] else old
        else:
            before.append(token)
            after.append(token)
    assert len(code) == len(source) - len(places)
    return [1, *before, 2], after


def test_a_rename_made_twice_is_carried_into_later_drafts() -> None:
    """`x` → `y_z` at six places: the output makes it at the first two, then every draft
    writes it wherever `x` recurs, and the model accepts it there; without carrying, every
    occurrence breaks a draft, and the replay counts those repeated substitutions."""
    context, target = rename_pair(3, [True] * 6, [7], [8, 9])
    with_carry = drive(ResyncProposer(16, 256), context, target)
    accepted, broke = carried(with_carry)
    assert accepted == 1 + 2 * 4 and broke == 0, (
        "the rest of it at the second place, where the output is making it again; "
        "then all of it at places 3-6")
    without = ResyncProposer(16, 256, carry=False)
    assert carried(drive(without, context, target)) == (0, 0)
    pair = Pair("p", "w", 1, context, target)
    ours = replay(Ours("ours", SpecConfig()), pair)
    ablation = replay(Ours("ours", SpecConfig(), carry=False), pair)
    assert ablation.repeats >= 4 and ours.repeats <= 1
    assert ours.passes <= ablation.passes - 4


def test_an_edit_the_output_declines_is_not_carried_again() -> None:
    """The rename is carried at the third place, where the output keeps `x`: from then on no
    draft carries it to a place ahead, though the output makes it again at the places after
    (where, once the output has begun it, the rest of it is still proposed)."""
    context, target = rename_pair(4, [True, True, False, True, True, True], [7], [8, 9])
    passes = drive(ResyncProposer(16, 256), context, target)
    declined = next(i for i, (p, a) in enumerate(passes)
                    if a < len(p) and p.origins[a] == COPIED_ELSEWHERE)
    for proposal, _ in passes[declined + 1 :]:
        leading = len(proposal.origins) - len(
            list(itertools.dropwhile(lambda o: o == COPIED_ELSEWHERE, proposal.origins)))
        assert COPIED_ELSEWHERE not in proposal.origins[leading:]
    assert sum(a < len(p) and p.tokens[a] == 7 for p, a in passes[declined + 1 :]) >= 3


def test_an_insertion_is_carried_only_between_its_neighbours() -> None:
    """An argument added between `(b` and `)` at five places is carried where that pair
    recurs, never declined; a `)` after anything else is left alone. A run that only grows
    (indentation: one more of the same token) is ambiguous and never carried."""
    rng = random.Random(5)
    pieces = [[20, 21, 22] if i % 2 == 0 else [23, 22] for i in range(10)]
    source = with_runs(rng, pieces)
    target = []
    for token, following in zip(source, [*source[1:], None], strict=True):
        target.append(token)
        if token == 21 and following == 22:
            target.append(30)
    accepted, broke = carried(drive(ResyncProposer(16, 256), [1, *source, 2], target))
    assert accepted >= 3 and broke == 0
    grown = with_runs(rng, [[5, 5, 5, 24]] * 6)
    deeper = [t for token in grown for t in ([5, token] if token == 24 else [token])]
    passes = drive(ResyncProposer(16, 256), [1, *grown, 2], deeper)
    assert all(COPIED_ELSEWHERE not in p.origins for p, _ in passes)


def test_a_carried_edit_cut_short_is_finished_before_the_source_resumes() -> None:
    """One token per pass (a chooser cutting every draft to one): after a pass that wrote the
    start of a carried three-token edit, the next drafts the rest of it, then the source after
    the old run."""
    context, target = rename_pair(6, [True] * 5, [7], [8, 9, 10])
    passes = drive(ResyncProposer(16, 256), context, target, limit=1)
    owed = [p.tokens for p, a in passes if p.origins[:1] == [COPIED_ELSEWHERE] and a
            and p.tokens[0] in (9, 10)]
    assert owed, "no pass went on with the rest of a carried edit"
    assert carried(passes)[1] == 0


def test_costs_weigh_each_pass_by_its_width() -> None:
    """Σ cost(1 + draft) / cost(1) per token: a flat curve counts passes, a linear one the
    tokens each pass verified; the bounds' passes are weighed by their own runs."""
    target = list(range(100, 150))
    pair = Pair("p", "w", 1, [1, 2, 3], target)
    result = replay(Oracle(target, 3, 9), pair)
    curves = {"flat": CostCurve.flat(), "linear": CostCurve((1, 2), (1.0, 2.0))}
    rows = summarize([result, *bound_results([pair])], "oracle", curves)
    oracle = next(r for r in rows if r.method == "oracle")
    assert oracle.cost_per_token == {"flat": 5 / 50, "linear": (5 + 45) / 50}
    known = Pair("q", "w", 1, [1, *target, 2], target)
    bound = next(r for r in summarize(bound_results([known]), "none", curves)
                 if r.method == bound_name(None))
    assert bound.cost_per_token == {"flat": 1 / 50, "linear": (1 + 50) / 50}, "one 50-token run"


def test_repeated_substitutions_are_counted() -> None:
    """A drafter that always guesses 7 where the output writes 5: every break after the first
    repeats it."""
    result = replay(Oracle([7] * 60, 3, 1), Pair("p", "w", 1, [1, 2, 3], [5] * 50))
    assert (result.passes, result.repeats) == (50, 49)
    row = summarize([result], "oracle")[0]
    assert row.repeated_share == 49 / 50


def kmp_vllm(tokens: list[int], min_n: int, max_n: int, k: int) -> list[int]:
    """A literal port of vLLM's `_find_longest_matched_ngram_and_propose_tokens` loop."""
    total = len(tokens)
    if total < min_n:
        return []
    rev = tokens[::-1]
    lps = [0] * max_n
    longest = position = prev = 0
    i = 1
    while i < total:
        if rev[prev] == rev[i]:
            prev += 1
            if prev >= longest:
                longest, position = prev, i
            if i < max_n:
                lps[i] = prev
            if prev == max_n:
                prev = lps[max_n - 1]
            i += 1
        elif prev != 0:
            prev = lps[prev - 1]
        else:
            i += 1
    if longest < min_n:
        return []
    start = total - 1 - position + longest
    return tokens[start : start + min(k, total - start)]


def scan_llamacpp(tokens: list[int], n: int, m: int) -> list[int]:
    """A literal port of llama.cpp's `common_ngram_simple_draft` (history + sampled)."""
    history, sampled = tokens[:-1], tokens[-1]
    cur_len = len(history)
    if cur_len <= n + m + 1:
        return []
    pattern = [*history[cur_len - n + 1 :], sampled]
    match = 0
    for j in range(cur_len - n - 1, 0, -1):
        if history[j : j + n] == pattern:
            match = j
            break
    if match == 0:
        return []
    copy_max = min(m, cur_len - (match + n))
    return [] if copy_max < n else history[match + n : match + n + copy_max]


@settings(max_examples=200, deadline=None)
@given(tokens=st.lists(st.integers(0, 3), min_size=1, max_size=80),
       grow=st.lists(st.integers(0, 3), max_size=10))
def test_ngram_peers_match_literal_ports(tokens: list[int], grow: list[int]) -> None:
    vllm, llama = VLLMNgram(2, 5, 10), LlamaCppNgramSimple(2, 6)
    vllm.begin("p", tokens)
    llama.begin("p", tokens)
    sequence = list(tokens)
    for token in [None, *grow]:  # the indexes grow incrementally, as in a replay
        if token is not None:
            sequence.append(token)
        assert vllm.propose(sequence) == kmp_vllm(sequence, 2, 5, 10)
        assert llama.propose(sequence) == scan_llamacpp(sequence, 2, 6)


def test_copyspec_reference_copies_the_earliest_occurrence() -> None:
    reference = CopySpecReference(gamma=2, k=3)
    reference.begin("p", [])
    assert reference.propose([1, 2, 7, 8, 9, 1, 2, 5, 6, 1, 2]) == [7, 8, 9]
    reference.begin("q", [])
    assert reference.propose([4, 1, 2]) == []  # the only occurrence is the suffix itself


def test_hf_prompt_lookup_is_transformers_first_match() -> None:
    hf = HFPromptLookup(ngram=2, k=3)
    assert hf.propose([5, 1, 2, 3, 4, 9, 1, 2, 8, 8, 1, 2]) == [3, 4, 9]


@pytest.mark.skipif(not arctic_available(), reason="arctic-inference is not installed")
def test_suffix_decoding_continues_a_repeated_run() -> None:
    from engine.bench.peers import SUFFIX_SETTINGS, SuffixDecoding

    suffix = SuffixDecoding(SUFFIX_SETTINGS[1])
    context = [*range(10, 40), 1, 2, *range(10, 15)]
    suffix.begin("toy", context)
    assert suffix.propose(context)[:5] == [15, 16, 17, 18, 19]
    suffix.end()


def test_index_positions_survive_truncation() -> None:
    index, fresh = NgramIndex(3), NgramIndex(3)
    index.extend([1, 2, 3, 1, 2, 4, 1])
    index.truncate(3)
    index.extend([9, 1])
    fresh.extend([1, 2, 3, 9, 1])
    assert index._after == fresh._after and index._follows == fresh._follows


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """A repository where one commit after another changes `f`, never `g`."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "demo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    for version in range(4):
        body = "\n".join(f"    x = {i}" for i in range(version + 1))
        (repo / "mod.py").write_text(
            f"class C:\n    def f(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n"
            f"        return x\n\n\ndef g():\n    return 1\n", encoding="utf-8")
        git(repo, "add", "mod.py")
        git(repo, "commit", "-qm", f"step {version}")
    return repo


def test_repo_extraction_finds_functions_files_and_chains(history: Path) -> None:
    workloads = extract(history)
    functions = workloads["single_function"]
    assert [r["function"] for r in functions] == ["C.f"] * 3
    first = functions[0]["turns"][0]
    assert first["context_text"].startswith("<|im_start|>user\n```python\ndef f(self):\n")
    assert "step 1<|im_end|>\n<|im_start|>assistant\n" in first["context_text"]
    assert first["target_text"] == (  # the method, dedented, as in the shared workloads
        "```python\ndef f(self):\n    x = 0\n    x = 1\n    return x\n```<|im_end|>")
    assert len(workloads["single_file"]) == 3
    chain = workloads["multi_turn"][0]["turns"]
    assert len(chain) == 3
    assert chain[0]["target_text"] in chain[1]["context_text"]
    assert chain[1]["target_text"] in chain[2]["context_text"]


def test_replay_command_writes_table_json_and_plot(tmp_path: Path, history: Path) -> None:
    out = tmp_path / "out"
    code = main(["bench", "replay", "--repo", str(history), "--peers", "vllm-ngram",
                 "--out", str(out)])
    assert code == 0
    payload = json.loads((out / "replay.json").read_text(encoding="utf-8"))
    methods = {row["method"] for row in payload["rows"]}
    chosen = {CHOSEN.format(curve=name) for name in ("cpu", "gpu")}
    assert {OURS, "vLLM ngram (2–5, K 10)", "bound, K ≤ 64", *chosen} <= methods
    assert {name + WITHOUT_CARRY for name in (OURS, *chosen)} <= methods
    assert all(set(row["cost_per_token"]) == {"cpu", "gpu"} for row in payload["rows"])
    assert (out / "replay.png").stat().st_size > 0
    text = (out / "replay.md").read_text(encoding="utf-8")
    assert "passes/token" in text and "cost per output token, cpu curve" in text
    assert main(["bench", "replay", "--repo", str(history), "--peers", "", "--no-ablations",
                 "--curve", "wide=1:1,8:2", "--out", str(out)]) == 0
    payload = json.loads((out / "replay.json").read_text(encoding="utf-8"))
    assert {row["method"] for row in payload["rows"]} >= {OURS, CHOSEN.format(curve="wide")}
    assert all(set(row["cost_per_token"]) == {"wide"} for row in payload["rows"])


def test_replay_command_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "missing.jsonl"
    assert main(["bench", "replay", "--workload", str(missing)]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["bench", "replay", "--workload", str(missing), "--peers", "nope"]) == 2
    capsys.readouterr()
    assert main(["bench", "replay", "--workload", str(missing), "--curve", "cpu=1:x"]) == 2
    assert "--curve '1:x'" in capsys.readouterr().err


def test_timed_replay_reports_tok_s_per_method(tmp_path: Path, history: Path) -> None:
    """Real forwards of the built-in model: plain decoding and ours, each in tok/s, per
    workload and over all; the JSON's figures and the Markdown table agree."""
    out = tmp_path / "out"
    assert main(["bench", "replay", "--repo", str(history), "--peers", "", "--no-ablations",
                 "--timed", "--model-shape", "builtin", "--device", "cpu", "--threads", "1",
                 "--max-target-tokens", "12", "--out", str(out)]) == 0
    timed = json.loads((out / "replay.json").read_text(encoding="utf-8"))["timed"]
    assert (timed["model_shape"], timed["dtype"], timed["threads"]) == ("builtin", "float32", 1)
    pairs, summary = timed["pairs"], timed["summary"]
    assert set(summary["by_workload"]) == {"single_function", "single_file", "multi_turn"}
    total = summary["all"]
    assert total["pairs"] == len(pairs) and total["tokens"] == sum(p["tokens"] for p in pairs)
    assert all(0 < p["tokens"] <= 12 and 0 < p["passes"] <= p["tokens"] for p in pairs)
    plain = sum(p["plain_seconds"] for p in pairs)
    assert total["tok_s"]["plain"] == pytest.approx(total["tokens"] / plain, rel=0.01)
    assert set(total["tok_s"]) == {"plain", OURS} and min(total["tok_s"].values()) > 0
    row = f"| all | {total['pairs']} | {total['tokens']} | {total['tok_s']['plain']:.1f} |"
    assert row in (out / "replay.md").read_text(encoding="utf-8")


def test_timed_replay_refuses_ids_past_the_shapes_vocabulary() -> None:
    """GPT-2's ids run to 50256, the built-in model's embedding to 4095: refused up front."""
    args = argparse.Namespace(model_shape="builtin", tokenizer=Path("gpt2"))
    check_vocabulary(args, [Pair("a", "w", 0, [1, 4095], [2])])
    with pytest.raises(UsageError, match="token id 4096, but the builtin shape's vocabulary"):
        check_vocabulary(args, [Pair("a", "w", 0, [1], [4096])])


def test_costs_command_writes_a_cost_curve_per_context(tmp_path: Path) -> None:
    """One timed forward per width and context on the built-in model: the JSON has a row per
    width at each context (width 1 is the unit), and the Markdown and plot are written."""
    out, widths, contexts = tmp_path / "costs", [1, 2, 4, 8], [16, 64]
    assert main(["bench", "costs", "--model-shape", "builtin", "--widths", "1,2,4,8",
                 "--contexts", "16,64", "--repeats", "2", "--device", "cpu", "--threads", "1",
                 "--out", str(out)]) == 0
    payload = json.loads((out / "costs.json").read_text(encoding="utf-8"))
    for context in contexts:
        curve = [c for c in payload["costs"] if c["context"] == context]
        assert [c["width"] for c in curve] == widths
        assert all(c["ms"] > 0 for c in curve) and curve[0]["relative"] == 1.0
        assert curve[1]["relative"] == pytest.approx(curve[1]["ms"] / curve[0]["ms"])
    caps = payload["meta"]["suggested_max_block"]
    assert set(caps) == {"16", "64"} and all(1 <= cap <= max(widths) - 1 for cap in caps.values())
    table = (out / "costs.md").read_text(encoding="utf-8")
    assert "| context | w=1 | w=2 | w=4 | w=8 |" in table
    assert all(f"| {context} | " in table for context in contexts)
    assert (out / "costs.png").read_bytes().startswith(b"\x89PNG")
