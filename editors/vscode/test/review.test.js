// Hunk-by-hunk review against the REAL server: the extension's Controller and Review, with only
// the VS Code window faked (./vscode-stub.js). What is faked on the server's side, and why: the
// answer. The tiny test model answers gibberish, so a test could not know where the hunks are;
// the server's test-only scripted answer (COPYSPEC_TEST_ANSWER, copyspec_lsp/adapters/scripted.py; s.script
// in ./server.js) makes every turn answer a known text, which still streams through the real
// path (shaping, streamed edits, the result and its hunks, computed by the server).
'use strict';
const { stub, Range, Position, Selection, workspace, window } = require('./vscode-stub');
const test = require('node:test');
const assert = require('node:assert/strict');
const { Controller } = require('../out/controller');
const { startServer, waitFor, within } = require('./server');

const ORIGINAL = [
  'def load_users(path):',
  '    f = open(path)',
  '    data = json.load(f)',
  '    f.close()',
  '    users = []',
  '    for item in data:',
  '        if item["active"] == True:',
  '            users.append(item["name"])',
  '    print("loaded", len(users), "users")',
  '    return users',
];
const ANSWER = [
  'def load_users(path):',
  '    with open(path) as f:', // hunk 1: three lines become two
  '        data = json.load(f)',
  '    users = []',
  '    for item in data:',
  '        if item["active"]:', // hunk 2
  '            users.append(item["name"])',
  '    return users', // hunk 3: the print is gone
];
const HEAD = 'import json\n\n\n';
const TAIL = '\n\n\nprint(load_users("u.json"))\n';
const SOURCE = HEAD + ORIGINAL.join('\n') + TAIL;
const REPLY = 'Here it is:\n```python\n' + ANSWER.join('\n') + '\n```\n';

let s;
test.before(async () => {
  s = await startServer();
  await waitFor(async () => (await s.conn.sendRequest('copyspec/status', {})).state !== 'loading', 90000, 'the model to load');
}, { timeout: 180000 });
test.after(async () => { await s?.stop(); });

/** An editor on SOURCE with the function selected, synced to the server like VS Code's. */
function editorFor(t, name) {
  const uri = `file:///tmp/review-${name}.py`;
  const doc = stub.openEditor(uri, SOURCE, new Selection(new Position(3, 0), new Position(12, 16)));
  s.open(uri, SOURCE);
  const sync = workspace.onDidChangeTextDocument((e) => {
    if (e.document === doc) s.change(uri, e.contentChanges.map((c) => ({ range: c.range, newText: c.text })));
  });
  const controller = new Controller(s.client, stub.statusBarItem(), stub.outputChannel());
  t.after(() => { sync.dispose(); controller.dispose(); });
  s.scriptFor(t, REPLY);
  stub.decorations.clear(); // only this controller's decorations count
  return { uri, doc, controller, editor: window.activeTextEditor };
}

/** The document's text with these function lines. */
const withLines = (lines) => HEAD + lines.join('\n') + TAIL;

test('Three hunks: accept the first and third, reject the second; the buffer is exact, typing elsewhere stays, undo reverts one action', async (t) => {
  const { uri, doc, controller, editor } = editorFor(t, 'three');
  stub.ui.inputs.push('use a with block, drop the print');
  await within(controller.refineSelection(), 60000, 'the refinement');
  assert.equal(doc.text, withLines(ANSWER), 'the answer streamed in');
  const streamed = doc.undoStack.length;
  const hunks = controller.review.hunks(uri);
  assert.deepEqual(hunks.map((h) => [h.start, h.end, h.other.length]), [[4, 6, 3], [8, 9, 1], [10, 10, 1]]);
  assert.equal(stub.context['copyspec.reviewing'], true);
  // Added rows marked, the original's lines beside them, Accept / Reject lenses on each hunk.
  const addedType = [...stub.decorations.keys()].find((type) => type.options.overviewRulerLane
    && type.options.backgroundColor.id === 'diffEditor.insertedLineBackground');
  assert.deepEqual(stub.decorations.get(addedType), ['    with open(path) as f:', '        data = json.load(f)', '        if item["active"]:']);
  const removedBeside = [...stub.decorations.keys()].find((type) => type.options.after?.textDecoration === 'line-through');
  assert.deepEqual(stub.beside.get(removedBeside), ['− f = open(path)', '− data = json.load(f) ⏎ f.close()',
    '− if item["active"] == True:', '− print("loaded", len(users), "users")']);
  const lenses = stub.lenses(doc);
  const accepts = lenses.filter((l) => l.command.title === '$(check) Accept');
  assert.deepEqual(accepts.map((l) => l.range.start.line), [4, 8, 10]);
  assert.ok(lenses.some((l) => l.command.command === 'copyspec.ui.acceptAll'));

  // 1. Accept the first hunk from its code lens: the buffer keeps it, no new undo step.
  await controller.acceptHunk(...accepts[0].command.arguments);
  assert.equal(doc.text, withLines(ANSWER));
  assert.equal(doc.undoStack.length, streamed, 'accepting a streamed hunk changes nothing');
  // The user types above the region and below it: the hunks move with the text.
  doc.type(new Range(0, 0, 0, 0), '# typed above\n');
  doc.type(new Range(doc.lineCount - 1, 0, doc.lineCount - 1, 0), '# typed below\n');
  assert.deepEqual(controller.review.hunks(uri).map((h) => [h.start, h.end]), [[9, 10], [11, 11]]);
  // 2. Reject the second with the cursor on it (the key's command takes the hunk at the cursor).
  editor.selection = new Selection(new Position(9, 4), new Position(9, 4));
  await controller.rejectHunk();
  const rejected = [...ANSWER.slice(0, 5), '        if item["active"] == True:', ...ANSWER.slice(6)];
  const typed = (lines) => '# typed above\n' + withLines(lines) + '# typed below\n';
  assert.equal(doc.text, typed(rejected), 'the second hunk has its original line back');
  // 3. Next hunk moves the cursor to the third; accept it there.
  controller.nextHunk();
  assert.equal(editor.selection.active.line, 11);
  await controller.acceptHunk();
  assert.equal(doc.text, typed(rejected), 'exactly as chosen, the typing kept');
  assert.equal(controller.review.hunks(uri).length, 0, 'the review is over');
  assert.equal(stub.context['copyspec.reviewing'], false);
  assert.equal(stub.lenses(doc).length, 0, 'no lens left');
  assert.ok([...stub.beside.values()].every((texts) => texts.length === 0), 'nothing shown beside');
  // Undo takes back the last action that changed the buffer (the reject), and only it.
  doc.undo();
  assert.equal(doc.text, typed(ANSWER));
});

test('Reject all puts the original back in one undo step; a hunk the user edits leaves the review as typed', async (t) => {
  const { uri, doc, controller } = editorFor(t, 'all');
  stub.ui.inputs.push('use a with block, drop the print');
  await within(controller.refineSelection(), 60000, 'the refinement');
  assert.equal(doc.text, withLines(ANSWER));
  doc.type(new Range(8, 8, 8, 8), 'MINE '); // inside the second hunk's row
  const mine = [...ANSWER.slice(0, 5), '        MINE if item["active"]:', ...ANSWER.slice(6)];
  assert.deepEqual(controller.review.hunks(uri).map((h) => h.start), [4, 10], 'the edited hunk left the review');
  const steps = doc.undoStack.length;
  await controller.rejectAll();
  const back = [...ORIGINAL.slice(0, 6), mine[5], ORIGINAL[7], ...ORIGINAL.slice(8)];
  assert.equal(doc.text, withLines(back), 'the other hunks have their original lines back, the typing stays');
  assert.equal(doc.undoStack.length, steps + 1, 'one undo step');
  doc.undo();
  assert.equal(doc.text, withLines(mine));
});

test('Previous and next hunk wrap around; a new request ends the review as it stands', async (t) => {
  const { uri, doc, controller, editor } = editorFor(t, 'moves');
  stub.ui.inputs.push('use a with block, drop the print');
  await within(controller.refineSelection(), 60000, 'the refinement');
  editor.selection = new Selection(new Position(0, 0), new Position(0, 0));
  controller.nextHunk(false);
  assert.equal(editor.selection.active.line, 10, 'previous from the top wraps to the last hunk');
  controller.nextHunk();
  assert.equal(editor.selection.active.line, 4, 'next from the last wraps to the first');
  editor.selection = new Selection(new Position(3, 0), new Position(10, 16));
  stub.ui.inputs.push('again');
  await within(controller.refineSelection(), 60000, 'the second refinement');
  assert.equal(doc.text, withLines(ANSWER), 'the same answer again: nothing to review');
  assert.equal(controller.review.hunks(uri).length, 0);
});
