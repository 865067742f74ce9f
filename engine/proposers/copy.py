"""Copy proposers: continue an earlier occurrence of what was just written.

`CopyProposer` is CopySpec's rule: look the last γ tokens up, copy K tokens after the match.
`ResyncProposer` (policy `resync`, the default) keeps a pointer into the source it is copying,
so a rewrite of code it has seen is followed as one alignment rather than looked up γ tokens at a
time: the pointer advances with every accepted token, and after a divergence it guesses a
substitution at once (or a short deletion, where the token written recurs just ahead), then
re-anchors at the nearest multi-token match around the divergence, falling back to the global
index. An answer that nothing matches yet starts where its context matches but for one short
substituted run (the role name of a chat header). Its draft length follows the alignment length.

It also carries the edits it recognises. An edit is a short source run the output replaced
by a new one, the copy resuming after it (a rename, a changed literal, an added argument).
Where the output makes an edit it made before, it is recognised as it is written (the old run
where the output left the source, the new one begun): the rest of the new run is proposed, and
from then on every draft writes the new run wherever the old one recurs in what it copies,
until the output declines it somewhere. An edit made once is as likely a one-off change:
carrying those from the first time made whole files dearer on the replay's CPU curve. Given
the tokenizer's line starts (`engine.indentation`), it carries a re-indented block the same
way: two lines in a row written at another depth, and every line start it copies moves there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.config import SpecConfig
from engine.indentation import LINE_START_MOST, LineStarts
from engine.proposers import COPIED_ELSEWHERE, Context, CopySource, Proposal
from engine.schedule import BlockSchedule

ANCHOR_WINDOW = 4096
"""How far around a divergence the re-anchoring search looks (tokens)."""
ANCHOR_CAP = 32
"""Agreement is compared up to this many tokens when ranking anchors (bounds the cost)."""
ANCHOR_SCAN = 16
"""Occurrences compared on each side of a divergence, and of the last γ tokens globally: with
many copies of one file in the context every comparison runs long, so this bounds the cost."""
ANCHOR_MIN = 1
"""Tokens of agreement an anchor needs; below it the source is assumed to resume in place."""
SUBSTITUTE_BELOW = 2
"""Right after a divergence, guess a one-token substitution unless an anchor agrees this much..."""
DELETION_WITHIN = 8
"""...or the token written recurs this few tokens ahead in the source (a short deletion)."""
EDIT_OLD = 8
"""Longest source run an edit replaces (tokens): longer ones are rewrites, not edits."""
EDIT_NEW = 16
"""Longest run an edit writes instead."""
EDIT_CONFIRM = 8
"""Tokens the output must follow the resumed copy for before what it wrote counts as an edit
(fewer let coincidental re-anchors through: more edits declined on the replay)."""
EDITS = 8
"""Edits carried at once, the latest first."""
LINE_WITHIN = 64
"""Tokens from a line's start within which a copy that resumed is compared with the line the
output writes (to see the same line at another depth)."""
RELABEL_RUN = 3
"""Longest run, on either side, that a match across a substitution replaces (tokens)."""
RELABEL_WITHIN = 8
"""Output tokens from the start of a turn during which a match across a substitution is
sought (it scans ANCHOR_WINDOW tokens, so it is kept to the answer's first passes)."""


def copy_proposer(spec: SpecConfig, line_starts: LineStarts | None = None
                  ) -> CopyProposer | ResyncProposer:
    """The copy proposer `spec` asks for: its policy, γ-gram lookups or the pointer (which
    carries indentation shifts where it knows the tokenizer's `line_starts`)."""
    if spec.policy == "resync":
        return ResyncProposer(spec.block, spec.max_block, line_starts=line_starts)
    # Verifying a few more copied tokens costs next to nothing, so K never drops below the
    # starting block: measured on the bench, shrinking to 1–2 lost more than it saved.
    return CopyProposer(BlockSchedule(spec.block, spec.adaptive, spec.max_block,
                                      min_block=spec.block))


class CopyProposer:
    """Proposes the tokens that followed an earlier occurrence of the last γ tokens."""

    source = "copy"

    def __init__(self, schedule: BlockSchedule) -> None:
        self.schedule = schedule

    def propose(self, context: Context, limit: int) -> Proposal:
        index = context.index
        start = index.continuation()
        k = min(self.schedule.size, limit)
        tokens = index.copy(start, k) if start is not None and k > 0 else []
        if not tokens or start is None:
            return Proposal()
        return Proposal(tokens, "copy", proposer=self,
                        origins=list(range(start, start + len(tokens))))

    def feedback(self, proposal: Proposal, accepted: int) -> None:
        self.schedule.update(len(proposal), accepted)


@dataclass(frozen=True)
class Edit:
    """A source run the output replaced by another, the copy resuming after it."""

    old: tuple[int, ...]
    new: tuple[int, ...]


@dataclass(frozen=True)
class Shift:
    """Every line start moved the same number of columns: a re-indented block."""

    columns: int


@dataclass(frozen=True)
class _Piece:
    """A stretch of a plan: `length` tokens from plan position `begin` on, copied as they are
    from source position `source` (edit None) or written by a carried edit whose old run
    starts there; the source resumes at `resume` after it."""

    begin: int
    length: int
    source: int
    resume: int
    edit: Edit | Shift | None = None


@dataclass
class _Plan:
    """What a proposal copied, piece by piece, to follow the output along it."""

    start: int
    """Where it copies the source from, after what an edit still owed (its first `owed`
    tokens)."""
    owed: int = 0
    tokens: list[int] = field(default_factory=list)
    pieces: list[_Piece] = field(default_factory=list)
    end: int = 0
    """Source position after the last piece."""

    def add(self, tokens: list[int], source: int, resume: int,
            edit: Edit | Shift | None = None) -> None:
        self.pieces.append(_Piece(len(self.tokens), len(tokens), source, resume, edit))
        self.tokens.extend(tokens)
        self.end = resume

    def origins(self) -> list[int]:
        """The source position of each token, COPIED_ELSEWHERE for a carried edit's."""
        out: list[int] = []
        for piece in self.pieces:
            out.extend(range(piece.source, piece.source + piece.length) if piece.edit is None
                       else [COPIED_ELSEWHERE] * piece.length)
        return out

    def before(self, i: int) -> tuple[int, int, int, Edit | Shift | None]:
        """Where things stand before token i: the source position the pointer is at, how many
        tokens a carried edit still owes first, where the output leaves the source if token i
        is rejected, and the carried edit that token i shows (a deletion, or a shift whose
        run is a prefix of the one written, shows in the token after it)."""
        previous = None
        for piece in self.pieces:
            if piece.begin <= i < piece.begin + piece.length:
                offset = i - piece.begin
                if piece.edit is not None:
                    return piece.resume, piece.length - offset, piece.source, piece.edit
                if offset == 0 and previous is not None and previous.edit is not None:
                    if not previous.length:
                        return piece.source, 0, previous.source, previous.edit
                    if isinstance(previous.edit, Shift):  # a line start the output moved less
                        return piece.source, 0, piece.source, previous.edit
                return piece.source + offset, 0, piece.source + offset, None
            previous = piece
        return self.end, 0, self.end, None


class ResyncProposer:
    """A pointer into the source being rewritten, re-synchronised right after each divergence.

    Draft length: twice the current alignment (the tokens before the pointer that equal the
    tokens just written, or the run copied along it with halving at divergences), within
    [min_block, max_block]; a long unchanged run earns a long draft, a fresh guess a short one.
    The candidate runs on to max_block, for a chooser that weighs lengths by their cost.

    It learns from the sequence itself: before each proposal it compares what was written since
    the last one with what it proposed, so it follows along whether its tokens were verified,
    cut short by a chooser, or not verified at all. `carry=False` proposes the source as it is
    (no edits carried), as the replay's ablation. With the tokenizer's `line_starts`, a change
    of indentation is carried too: a block re-indented moves every line start it copies."""

    source = "copy"

    def __init__(self, min_block: int, max_block: int, carry: bool = True,
                 line_starts: LineStarts | None = None) -> None:
        self.min_block, self.max_block, self.carry = min_block, max_block, carry
        self.line_starts = line_starts
        self._pointer: int | None = None
        """Source position expected to hold the next output token, while aligned."""
        self._owed: list[int] = []
        """While aligned inside a carried edit: the rest of its new run, due before the
        source resumes at the pointer."""
        self._owed_edit: Edit | Shift | None = None
        self._diverged: int | None = None
        """Source position where the output last left the source, until re-anchored."""
        self._left = 0
        """Where in the sequence the output left the source (the divergence's output side)."""
        self._since = 0
        """Tokens written since that divergence."""
        self._run = 0
        """Tokens copied along the current alignment, halved at each divergence: an edit
        inside a long unchanged run keeps most of the run's draft length."""
        self._plan: _Plan | None = None
        """What the last proposal copied (None: it proposed nothing)..."""
        self._origins: list[int] = []
        """...and where each of its tokens came from."""
        self._seen = 0
        self._edits: list[Edit] = []
        """Edits carried into drafts, the latest first."""
        self._made: set[Edit] = set()
        """Edits the output made once: the second time they are carried."""
        self._refused: set[Edit] = set()
        """Edits the output declined somewhere: not carried again."""
        self._shift: Shift | None = None
        """The indentation shift carried into drafts, until the output declines it."""
        self._shift_made: tuple[Shift, int] | None = None
        """The shift the output made last, and where: made again on the next line, it is
        carried."""
        self._resumed: tuple[int, int, int, int] | None = None
        """(source, sequence) positions where the output left the source and where the copy
        resumed, until the output has followed the copy long enough for an edit to count."""

    def propose(self, context: Context, limit: int) -> Proposal:
        index = context.index
        self._follow(index)
        start, mode, beyond = self._choose(index)
        self._seen, self._plan = len(index), None
        if start is None or limit <= 0 or (start >= len(index) and not self._owed):
            return Proposal()
        run = self._run if self._diverged is None or self._since == 1 else 0
        aligned = max(run, index.agreement(start, self.max_block // 2) + beyond)
        k = min(limit, max(self.min_block, min(self.max_block, 2 * aligned)))
        length = min(limit, self.max_block)
        plan = self._planned(index, start, length)
        if not plan.tokens:
            return Proposal()
        self._plan, self._origins = plan, plan.origins()
        candidate = plan.tokens[:length]
        return Proposal(candidate[:k], "copy", proposer=self, candidate=candidate,
                        origins=self._origins[:length], mode=mode, aligned=aligned)

    def feedback(self, proposal: Proposal, accepted: int) -> None:
        """Nothing to do: the next `propose` reads what was written from the index."""

    def _planned(self, index: CopySource, start: int, length: int) -> _Plan:
        """`length` tokens from `start` on: what a carried edit still owes, then the source with
        every carried edit applied where its old run occurs (edits are planned whole, so one
        cut off by `length` still tells where the pointer stands after any of its tokens)."""
        plan = _Plan(start, len(self._owed), end=start)
        owed = self._owed_edit
        if self._owed and owed is not None:
            plan.add(self._owed, start - len(owed.old) if isinstance(owed, Edit) else start,
                     start, owed)
        wanted = length - len(plan.tokens)
        shift = self._shift
        ahead = EDIT_OLD if shift is None else EDIT_OLD + LINE_START_MOST
        source = index.copy(start, wanted + ahead) if wanted > 0 and start < len(index) else []
        if not self._edits and shift is None:
            if source[:wanted]:
                plan.add(source[:wanted], start, start + len(source[:wanted]))
            return plan
        firsts = {e.old[0] for e in self._edits}
        run = i = 0
        while i < len(source) and len(plan.tokens) + i - run < length:
            edit = self._edit_at(source, i) if source[i] in firsts else None
            if edit is not None:
                new, end = list(edit.new), i + len(edit.old)
            else:
                moved = self._moved(source, i)
                if moved is None:
                    i += 1
                    continue
                new, end, edit = list(moved[0]), moved[1], shift
            if i > run:
                plan.add(source[run:i], start + run, start + i)
            plan.add(new, start + i, start + end, edit)
            i = run = end
        if i > run:
            plan.add(source[run:i], start + run, start + i)
        return plan

    def _moved(self, source: list[int], i: int) -> tuple[tuple[int, ...], int] | None:
        """The line start at `source[i]` written at the carried shift's depth, and where the
        source's own run ends; None where no line starts or no shift is carried."""
        lines, shift = self.line_starts, self._shift
        if shift is None or lines is None or source[i] not in lines.firsts:
            return None
        return lines.shifted(source, i, shift.columns)

    def _edit_at(self, source: list[int], i: int) -> Edit | None:
        """The latest carried edit whose old run starts at `source[i]` (and fits)."""
        for edit in self._edits:
            if tuple(source[i : i + len(edit.old)]) == edit.old:
                return edit
        return None

    def _follow(self, index: CopySource) -> None:
        """Move the pointer over what was written since the last proposal, or note where it
        left the source."""
        written = len(index) - self._seen
        if written <= 0 or not self._seen:
            return
        plan = self._plan
        if plan is None:
            self._since += written  # no proposal: still off the source
            return
        tokens, seen, origins = index.tokens, self._seen, self._origins
        matched = 0
        while (matched < written and matched < len(plan.tokens)
               and origins[matched] < seen and plan.tokens[matched] == tokens[seen + matched]):
            matched += 1
        at, owed, left, edit = plan.before(matched)
        if matched == len(plan.tokens):  # past the plan, the source as it is
            while (matched < written and at < seen
                   and tokens[at] == tokens[seen + matched]):
                matched, at = matched + 1, at + 1
            left = at
        self._carry_resumed(index, plan, matched)
        if matched == written:
            self._owed = plan.tokens[matched : matched + owed]
            self._owed_edit = edit if owed else None
            self._pointer, self._diverged, self._since = at, None, 0
            self._run += matched
        elif matched == 0 and self._pointer is None:
            self._since += written  # a guess that failed: still off the source
        else:
            if edit is not None:
                self._declined(edit)
            self._pointer, self._owed, self._owed_edit = None, [], None
            self._diverged, self._left = left, seen + matched
            self._since = written - matched
            self._run = (self._run + matched) // 2
            self._resumed = None

    def _carry_resumed(self, index: CopySource, plan: _Plan, matched: int) -> None:
        """The output followed a copy that resumed after it had left the source: once it has
        followed it for EDIT_CONFIRM tokens, what it wrote in between is an edit to carry."""
        if self._diverged is not None and matched > plan.owed and self.carry:
            self._resumed = (self._diverged, self._left, plan.start, self._seen + plan.owed)
            if self._learn_shift(index, plan.start, self._seen + plan.owed):
                self._resumed = None
        if self._resumed is not None and self._seen + matched - self._resumed[3] >= EDIT_CONFIRM:
            self._learn(index, *self._resumed)
            self._resumed = None

    def _learn(self, index: CopySource, left: int, out_left: int, right: int,
               out_right: int) -> None:
        """Note the edit the output made, source[left:right] becoming sequence[out_left:
        out_right] (both read through the index), less what they share: carried the second
        time."""
        tokens = index.tokens
        old = [tokens[p] for p in range(left, right)] if 0 <= right - left <= EDIT_OLD else None
        new = [tokens[p] for p in range(out_left, out_right)]
        if old is None or len(new) > EDIT_NEW:
            return
        while old and new and old[-1] == new[-1]:
            old.pop()
            new.pop()
            right -= 1
        shared = 0
        while shared < min(len(old), len(new)) and old[shared] == new[shared]:
            shared += 1
        old, new, left = old[shared:], new[shared:], left + shared
        if old == new:
            return
        if not old or not new:  # an insertion or a deletion
            if left == 0 or right >= len(index):
                return
            before, after, run = tokens[left - 1], tokens[right], old or new
            if run[0] == after or run[-1] == before:
                return  # a run grown or shrunk (indentation): where is ambiguous
            old, new = [before, *old, after], [before, *new, after]  # carried between them
        edit = Edit(tuple(old), tuple(new))
        if edit in self._made:
            self._carried(edit)
        elif edit not in self._refused:
            self._made.add(edit)

    def _learn_shift(self, index: CopySource, source: int, out: int) -> bool:
        """Whether the copy that resumed at `source`, the output being at `out`, resumed in a
        line the output writes at another depth, the same up to there: a shift, carried once
        it is made again on the next line (a block moves as one; two far-apart lines at other
        depths are more likely two unrelated edits)."""
        lines, tokens = self.line_starts, index.tokens
        if lines is None:
            return False
        found = [_line_start(lines, tokens, at) for at in (source, out)]
        if found[0] is None or found[1] is None:
            return False
        (newlines, depth, begin), (out_newlines, out_depth, out_begin) = found
        if (newlines != out_newlines or depth == out_depth
                or source - begin != out - out_begin
                or any(tokens[begin + i] != tokens[out_begin + i] for i in range(source - begin))):
            return False
        shift, previous = Shift(out_depth - depth), self._shift_made
        if (previous is not None and previous[0] == shift
                and sum(tokens[p] in lines.firsts for p in range(previous[1], out)) <= 1):
            self._shift = shift
        self._shift_made = (shift, out)
        return True

    def _carried(self, edit: Edit) -> None:
        """Carry `edit` into drafts from now on (unless the output declined it before)."""
        if edit not in self._refused and edit not in self._edits:
            self._edits = [edit, *(e for e in self._edits if e.old != edit.old)][:EDITS]

    def _declined(self, edit: Edit | Shift) -> None:
        """The output did not write a carried edit where its old run recurred: drop it. A
        shift can be learnt again (the next block may move as far)."""
        if isinstance(edit, Shift):
            self._shift = self._shift_made = None
            return
        self._edits = [e for e in self._edits if e is not edit]
        self._refused.add(edit)

    def _made_again(self, index: CopySource, left: int) -> int | None:
        """Where the source resumes if the output is making an edit it made before, here where
        it left the source at `left` (the old run there, the new one written so far): the rest
        of the new run is owed first. None when it is not."""
        if not self.carry or self._since > EDIT_NEW:
            return None
        tokens, out_left = index.tokens, self._left
        for edit in (*self._edits, *self._made):
            shared = 0  # the context an insertion or a deletion keeps before it
            while (shared < min(len(edit.old), len(edit.new)) - 1
                   and edit.old[shared] == edit.new[shared]):
                shared += 1
            begin, written = left - shared, shared + self._since
            if (written <= len(edit.new) and begin >= 0 and out_left >= shared
                    and begin + len(edit.old) <= len(index)
                    and all(tokens[begin + i] == old for i, old in enumerate(edit.old))
                    and all(tokens[out_left - shared + i] == edit.new[i]
                            for i in range(written))):
                self._owed, self._owed_edit = list(edit.new[written:]), edit
                self._carried(edit)  # made a second time: carried from here on
                return begin + len(edit.old)
        return None

    def _choose(self, index: CopySource) -> tuple[int | None, str, int]:
        """Where to copy from, how that was found, and the agreement behind it that the
        tokens just before it do not show (a relabelled start's, across its substituted run)."""
        if self._pointer is not None:
            return self._pointer, "aligned", 0
        self._owed, self._owed_edit = [], None
        if self._diverged is None:
            match = index.match(ANCHOR_CAP, ANCHOR_SCAN)
            if match is None and self._since < RELABEL_WITHIN:
                start, beyond = _relabelled(index)
                return start, "relabelled", beyond
            return match, "match", 0
        again = self._made_again(index, self._diverged)
        if again is not None:
            return again, "edit", 0
        anchor, agreement = index.anchor(self._diverged, ANCHOR_WINDOW, ANCHOR_CAP, ANCHOR_SCAN)
        match = index.match(ANCHOR_CAP, ANCHOR_SCAN)
        if match is not None and index.agreement(match, ANCHOR_CAP) > agreement:
            anchor, agreement = match, index.agreement(match, ANCHOR_CAP)
        deletion = agreement and 0 < anchor - self._diverged <= DELETION_WITHIN
        if self._since == 1 and agreement < SUBSTITUTE_BELOW and not deletion:
            return self._diverged + 1, "substitute", 0  # a substitution: skip one token
        if agreement >= ANCHOR_MIN:
            return anchor, "anchor", 0
        return self._diverged, "resume", 0  # an insertion so far: the source may resume here


def _line_start(lines: LineStarts, tokens: Sequence[int], at: int) -> tuple[int, int, int] | None:
    """(newlines, columns, where its first word is) of the line that position `at` is in, at
    or after that word; None when it is not (or the line is longer than LINE_WITHIN)."""
    begin = at - 1
    while begin >= 0 and at - begin <= LINE_WITHIN and tokens[begin] not in lines.firsts:
        begin -= 1
    if begin < 0 or at - begin > LINE_WITHIN:
        return None
    ahead = range(begin, min(begin + LINE_START_MOST, len(tokens)))
    found = lines.at([tokens[p] for p in ahead], 0)  # by position: a prediction's view
    if found is None or begin + found[2] > at:
        return None
    return found[0], found[1], begin + found[2]


def _relabelled(index: CopySource) -> tuple[int | None, int]:
    """Where the output's last token follows, within ANCHOR_WINDOW, the context the output has
    before it but for one substituted run (up to RELABEL_RUN tokens on either side): an
    answer's header (`assistant`) where the user's had `user`, so that the answer, which
    nothing else matches yet, copies what followed the user's header, the code to rewrite.
    Most agreement before the substitution wins, then the shorter substitution, then the
    latest. Also how many tokens agree before the substitution: evidence for the copy that the
    token before the start does not show. (None, 0) when nothing agrees on both sides of one."""
    tokens, end = index.tokens, len(index)
    if end < 3:
        return None, 0
    last = tokens[end - 1]
    news = range(1, min(RELABEL_RUN, end - 2) + 1)
    # The token before a substituted run of `new` tokens at the output's end.
    before_new = {new: tokens[end - 2 - new] for new in news}
    best, best_key = None, (0, 0)
    for start in range(end - 1, max(2, end - ANCHOR_WINDOW), -1):
        if tokens[start - 1] != last:
            continue
        for old in range(1, min(RELABEL_RUN, start - 2) + 1):
            before = start - 2 - old
            for new in news:
                if tokens[before] != before_new[new] or (old == new and all(
                        tokens[start - 1 - old + i] == tokens[end - 1 - new + i]
                        for i in range(old))):
                    continue
                ours, agreement = end - 2 - new, 1
                while (agreement < min(before + 1, ANCHOR_CAP)
                       and tokens[before - agreement] == tokens[ours - agreement]):
                    agreement += 1
                key = (agreement, -old - new)
                if key > best_key:
                    best, best_key = start, key
    return best, best_key[0]
