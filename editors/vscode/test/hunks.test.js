// Unit tests of the review's pure logic (out/hunks.js has no `vscode` import): following hunks by
// row, the edits that swap them (at the end of a document too), and which hunk the keys pick.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const {
  reviewHunks, changedRows, trackRows, rowsEdit, currentHunk, nextHunk, otherBesideRows, dedent, besideText,
} = require('../out/hunks');
const { stretchRange } = require('../out/logic');

const pos = (line, character) => ({ line, character });
const range = (a, b, c, d) => ({ start: pos(a, b), end: pos(c, d) });
const rows = (start, count) => range(start, 0, start + count, 0);

/** Applies an LSP text edit to `text` (LF line breaks). */
function applied(text, edit) {
  const lines = text.split('\n');
  const offset = (p) => lines.slice(0, p.line).reduce((n, l) => n + l.length + 1, 0) + p.character;
  return text.slice(0, offset(edit.range.start)) + edit.text + text.slice(offset(edit.range.end));
}

/** rowsEdit for rows [start, end) of `text` made to read `lines`, applied. */
function swapRows(text, start, end, lines) {
  const all = text.split('\n');
  return applied(text, rowsEdit(start, end, lines, all.length, (r) => all[r].length, '\n'));
}

test('reviewHunks takes the side the document shows, moved by the shift', () => {
  const wire = [{ range: rows(5, 2), originalRange: rows(5, 3), newLines: ['a', 'b'], originalLines: ['x', 'y', 'z'] }];
  assert.deepEqual(reviewHunks(wire, true, 1), [{ id: 0, start: 6, end: 8, shown: ['a', 'b'], other: ['x', 'y', 'z'] }]);
  assert.deepEqual(reviewHunks(wire, false), [{ id: 0, start: 5, end: 8, shown: ['x', 'y', 'z'], other: ['a', 'b'] }]);
});

test('changedRows: the rows a text change replaced and the rows it left', () => {
  assert.deepEqual(changedRows({ range: range(2, 3, 2, 3), text: 'x' }), [2, 3, 3]);
  assert.deepEqual(changedRows({ range: range(2, 3, 2, 3), text: 'x\ny\n' }), [2, 3, 5]);
  assert.deepEqual(changedRows({ range: range(2, 0, 4, 0), text: '' }), [2, 5, 3]);
});

test('trackRows: changes above move a hunk, below leave it, on its rows drop it', () => {
  const hunk = { start: 5, end: 7 };
  assert.deepEqual(trackRows(hunk, 0, 1, 3), { start: 7, end: 9 }, 'two rows inserted above');
  assert.deepEqual(trackRows(hunk, 4, 5, 5), hunk, 'typing on the row above');
  assert.deepEqual(trackRows(hunk, 4, 5, 6), { start: 6, end: 8 }, 'a line break typed at the end of the row above');
  assert.deepEqual(trackRows(hunk, 7, 8, 9), hunk, 'the row below');
  assert.equal(trackRows(hunk, 6, 7, 7), undefined, 'typing on its last row');
  assert.equal(trackRows(hunk, 4, 6, 5), undefined, 'the row above joined with its first');
  const none = { start: 5, end: 5 }; // a hunk of no rows (a deletion), between rows 4 and 5
  assert.deepEqual(trackRows(none, 4, 5, 5), none, 'typing on the row above it');
  assert.deepEqual(trackRows(none, 5, 6, 6), none, 'typing on the row below it');
  assert.equal(trackRows(none, 4, 6, 5), undefined, 'the line break it sits at removed');
  assert.deepEqual(trackRows(none, 1, 3, 2), { start: 4, end: 4 }, 'a row removed above');
});

test('rowsEdit swaps rows anywhere, at the end of a document with or without a final line break too', () => {
  const text = 'a\nb\nc';
  assert.equal(swapRows(text, 1, 2, ['B', 'B2']), 'a\nB\nB2\nc', 'a middle row');
  assert.equal(swapRows(text, 1, 1, ['new']), 'a\nnew\nb\nc', 'rows inserted');
  assert.equal(swapRows(text, 1, 2, []), 'a\nc', 'a row removed');
  assert.equal(swapRows(text, 2, 3, ['C', 'D']), 'a\nb\nC\nD', 'the last row, no final break');
  assert.equal(swapRows(text, 1, 3, []), 'a', 'the last rows removed: the break before them goes');
  assert.equal(swapRows(text, 3, 3, ['d']), 'a\nb\nc\nd', 'rows after the last');
  assert.equal(swapRows(text, 0, 3, []), '', 'every row removed');
  assert.equal(swapRows('a\nb\n', 1, 2, ['B']), 'a\nB\n', 'a final line break stays');
  assert.equal(swapRows('a\nb\n', 1, 1, ['x']), 'a\nx\nb\n');
  assert.deepEqual(rowsEdit(0, 1, ['x'], 2, () => 1, '\r\n'), { range: range(0, 0, 1, 0), text: 'x\r\n' }, 'the document\'s line breaks');
});

test('currentHunk: the hunk at the row, else the next below, else the last; nextHunk wraps around', () => {
  const hunks = [{ id: 0, start: 2, end: 4 }, { id: 1, start: 8, end: 8 }, { id: 2, start: 12, end: 13 }];
  assert.equal(currentHunk(hunks, 3).id, 0);
  assert.equal(currentHunk(hunks, 5).id, 1);
  assert.equal(currentHunk(hunks, 8).id, 1, 'a hunk of no rows counts at the row below it');
  assert.equal(currentHunk(hunks, 20).id, 2);
  assert.equal(currentHunk([], 0), undefined);
  assert.equal(nextHunk(hunks, 2).id, 1);
  assert.equal(nextHunk(hunks, 12).id, 0, 'wraps to the first');
  assert.equal(nextHunk(hunks, 8, false).id, 0);
  assert.equal(nextHunk(hunks, 2, false).id, 2, 'wraps to the last');
});

test('otherBesideRows pairs the other side with the shown rows; the rest joins the last one', () => {
  assert.deepEqual(otherBesideRows({ start: 4, shown: ['A', 'B'], other: ['a', 'b', 'c'] }),
    [{ row: 4, lines: ['a'] }, { row: 5, lines: ['b', 'c'] }]);
  assert.deepEqual(otherBesideRows({ start: 4, shown: ['A', 'B', 'C'], other: ['a'] }), [{ row: 4, lines: ['a'] }]);
  assert.deepEqual(otherBesideRows({ start: 4, shown: [], other: ['gone'] }), [{ row: 3, lines: ['gone'] }], 'beside the row above');
  assert.deepEqual(otherBesideRows({ start: 0, shown: [], other: ['gone'] }), [{ row: 0, lines: ['gone'] }]);
  assert.deepEqual(otherBesideRows({ start: 4, shown: ['new'], other: [] }), []);
  assert.deepEqual(otherBesideRows({ start: 4, shown: ['A', 'B'], other: ['    with x:', '        y()'] }),
    [{ row: 4, lines: ['with x:'] }, { row: 5, lines: ['    y()'] }], 'the shared indentation goes, the rest stays');
});

test('stretchRange: a session region takes in the review\'s own edit inside or across its end', () => {
  const region = range(3, 0, 9, 16);
  assert.deepEqual(stretchRange(region, { range: range(5, 0, 7, 0), text: 'x\n' }), range(3, 0, 8, 16), 'rows replaced inside');
  assert.deepEqual(stretchRange(region, { range: range(8, 20, 9, 16), text: '' }), range(3, 0, 8, 20), 'its last rows removed');
  assert.deepEqual(stretchRange(region, { range: range(0, 0, 0, 0), text: '#\n' }), range(4, 0, 10, 16), 'a change above moves it');
});

test('dedent takes away the indentation all non-blank lines share', () => {
  assert.deepEqual(dedent(['    a', '      b', '', '    c']), ['a', '  b', '', 'c']);
  assert.deepEqual(dedent(['a', '  b']), ['a', '  b']);
  assert.deepEqual(dedent([]), []);
});

test('besideText joins the lines and keeps their indentation as no-break spaces', () => {
  assert.equal(besideText(['with x:', '    y()'], 4), 'with x: ⏎ \u00a0\u00a0\u00a0\u00a0y()');
  assert.equal(besideText(['\tz', 'a b'], 2), '\u00a0\u00a0z ⏎ a b', 'a tab is tabSize wide; inner spaces stay');
});
