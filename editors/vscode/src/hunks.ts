// Hunk-by-hunk review, the pure part: no `vscode` import, so `node --test` loads it directly.
// The server computes the hunks once for every editor (copyspec_lsp/flow/hunks.py) and sends them
// with the result; here they are followed by row through the user's edits and turned into
// edits of whole rows. Rows are LSP lines; a hunk's rows never include part of a line.
import { Change, Range, endOf } from './logic';

/** A hunk as the server sends it: whole-row ranges (character 0), each ending at the start
 * of the row after its last one; `range` in the document with the answer, `originalRange` in
 * the document without it. */
export interface WireHunk { range: Range; originalRange: Range; newLines: string[]; originalLines: string[] }

/** A hunk under review: rows [start, end) of the document hold `shown` now, and swapping it
 * puts `other` there instead (the original lines when the answer is shown, else the answer's). */
export interface ReviewHunk { id: number; start: number; end: number; shown: string[]; other: string[] }

/**
 * The result's hunks as the document shows them: with the answer in it (a streamed answer)
 * or without (a preview), `shift` rows further down (typing above the region that the result
 * had not seen yet).
 */
export function reviewHunks(hunks: readonly WireHunk[], answerShown: boolean, shift = 0): ReviewHunk[] {
  return hunks.map((h, id) => {
    const [range, shown, other] = answerShown
      ? [h.range, h.newLines, h.originalLines] : [h.originalRange, h.originalLines, h.newLines];
    return { id, start: range.start.line + shift, end: range.end.line + shift, shown, other };
  });
}

/** A change of the text as rows: rows [first, lastOld) became rows [first, lastNew). */
export function changedRows(change: Change): [number, number, number] {
  const first = change.range.start.line;
  return [first, change.range.end.line + 1, endOf(change.range.start, change.text).line + 1];
}

/**
 * Where rows [start, end) stand after rows [first, lastOld) became [first, lastNew); undefined
 * when the change touches them (a row of theirs, or for no rows, the line break they sit at),
 * so a hunk the user edited is never swapped over their text.
 */
export function trackRows(rows: { start: number; end: number }, first: number, lastOld: number, lastNew: number):
  { start: number; end: number } | undefined {
  const { start, end } = rows;
  const touched = end > start ? first < end && lastOld > start : first < start && lastOld > start;
  if (touched) return undefined;
  if (lastOld > start) return rows; // the change is below
  const by = lastNew - lastOld;
  return { start: start + by, end: end + by };
}

/**
 * The text edit that makes rows [start, end) of a document of `lineCount` rows read `lines`.
 * Rows end with `eol`, except the last row of the document, which has none: at the end of the
 * document the line break before the rows goes instead.
 */
export function rowsEdit(start: number, end: number, lines: readonly string[], lineCount: number,
  lengthOf: (row: number) => number, eol: string): { range: Range; text: string } {
  const at = (line: number, character: number) => ({ line, character });
  if (end < lineCount) {
    return { range: { start: at(start, 0), end: at(end, 0) }, text: lines.map((l) => l + eol).join('') };
  }
  const last = lineCount - 1;
  const docEnd = at(last, lengthOf(last));
  if (start >= lineCount) { // after the last row
    return { range: { start: docEnd, end: docEnd }, text: lines.map((l) => eol + l).join('') };
  }
  if (lines.length > 0 || start === 0) {
    return { range: { start: at(start, 0), end: docEnd }, text: lines.join(eol) };
  }
  return { range: { start: at(start - 1, lengthOf(start - 1)), end: docEnd }, text: '' };
}

/** The hunk at `row` (a hunk of no rows counts at the row below it), else the first one
 * below it, else the last one. */
export function currentHunk<H extends ReviewHunk>(hunks: readonly H[], row: number): H | undefined {
  const sorted = [...hunks].sort((a, b) => a.start - b.start);
  return sorted.find((h) => row < Math.max(h.end, h.start + 1)) ?? sorted[sorted.length - 1];
}

/** The next hunk starting below `row` (or above it, for `forward` false), wrapping around. */
export function nextHunk<H extends ReviewHunk>(hunks: readonly H[], row: number, forward = true): H | undefined {
  const sorted = [...hunks].sort((a, b) => a.start - b.start);
  if (!forward) sorted.reverse();
  return sorted.find((h) => (forward ? h.start > row : h.start < row)) ?? sorted[0];
}

/**
 * Where a hunk's `other` lines are shown, since VS Code has no virtual lines: each next to a
 * shown row, in order; those left over join the last shown row, or for a hunk of no rows the
 * row above it (the first row when there is none). Their common indentation goes (they stand
 * after text), the indentation between them stays.
 */
export function otherBesideRows(hunk: ReviewHunk): { row: number; lines: string[] }[] {
  const { start, shown } = hunk;
  const other = dedent(hunk.other);
  if (shown.length === 0) return other.length ? [{ row: Math.max(0, start - 1), lines: [...other] }] : [];
  const beside = shown.map((_, t) => ({ row: start + t, lines: other.slice(t, t + 1) }));
  beside[beside.length - 1].lines.push(...other.slice(shown.length));
  return beside.filter((b) => b.lines.length > 0);
}

/** `lines` without the indentation they all share (blank lines aside). */
export function dedent(lines: readonly string[]): string[] {
  const indents = lines.filter((l) => l.trim()).map((l) => /^[ \t]*/.exec(l)![0].length);
  const common = indents.length ? Math.min(...indents) : 0;
  return lines.map((l) => l.slice(Math.min(common, /^[ \t]*/.exec(l)![0].length)));
}

/** One row's `after` text: the lines joined by ⏎, their indentation as no-break spaces (a
 * decoration's text collapses plain white space), a tab as `tabSize` of them. */
export function besideText(lines: readonly string[], tabSize: number): string {
  return lines.map((l) => l.replace(/^[ \t]+/, (indent) =>
    [...indent].map((c) => (c === '\t' ? '\u00a0'.repeat(tabSize) : '\u00a0')).join(''))).join(' ⏎ ');
}
