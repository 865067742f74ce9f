// The extension against the real server when the client does NOT advertise
// workspace.workspaceEdit.documentChanges: the streamed edits are then plain `changes` edits,
// still minimal, and the extension applies them as given (a server without versioning).
// Only the VS Code window is faked (./vscode-stub.js); the server and the controller are real.
'use strict';
const { stub, Position, Selection, workspace } = require('./vscode-stub');
const test = require('node:test');
const assert = require('node:assert/strict');
const { Controller } = require('../out/controller');
const { startServer, waitFor, within } = require('./server');

const SOURCE = 'def area(w, h):\n    return w * h\n\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n';

let s;
test.before(async () => {
  s = await startServer({ versioned: false });
  await waitFor(async () => (await s.conn.sendRequest('copyspec/status', {})).state !== 'loading', 90000, 'the model to load');
}, { timeout: 180000 });
test.after(async () => { await s?.stop(); });

function controllerFor(uri, maxNewTokens) {
  const doc = stub.openEditor(uri, SOURCE, new Selection(new Position(0, 0), new Position(1, 16)));
  s.open(uri, SOURCE);
  const sync = workspace.onDidChangeTextDocument((e) => {
    if (e.document === doc) s.change(uri, e.contentChanges.map((c) => ({ range: c.range, newText: c.text })));
  });
  const rpc = { ...s.client, sendRequest: (m, p, token) => s.client.sendRequest(m, { ...p, maxNewTokens }, token) };
  const controller = new Controller(rpc, stub.statusBarItem(), stub.outputChannel());
  return { doc, controller, dispose: () => { sync.dispose(); controller.dispose(); } };
}

test('Without documentChanges the stream comes as `changes` edits: applied as given, one undo step', async (t) => {
  const uri = 'file:///tmp/unversioned-refine.py';
  const { doc, controller, dispose } = controllerFor(uri, 120);
  t.after(dispose);
  stub.ui.inputs.push('add type hints');
  s.edits.length = 0;
  s.answers.length = 0;
  await controller.refineSelection();
  assert.ok(s.edits.length >= 2, `expected several streamed edits, got ${s.edits.length}`);
  assert.ok(s.edits.every((e) => !e.edit.documentChanges && Object.keys(e.edit.changes ?? {}).length === 1), 'unversioned edits');
  assert.ok(s.answers.every((a) => a.answer.applied), JSON.stringify(s.answers.map((a) => a.answer)));
  const last = controller.sessions.get(uri);
  assert.equal(last.range.start.line, 0);
  assert.equal(s.text(uri), doc.text, 'the server saw every edit');
  assert.notEqual(doc.text, SOURCE);
  assert.ok(doc.text.endsWith(SOURCE.slice(SOURCE.indexOf('\n\n\n'))), 'the rest of the file is untouched');
  assert.equal(doc.undoStack.length, 1, 'one undo step for the whole stream');
  doc.undo();
  assert.equal(doc.text, SOURCE);
});

test('Without documentChanges a cancel mid-stream still puts the original back', async (t) => {
  const uri = 'file:///tmp/unversioned-cancel.py';
  const { doc, controller, dispose } = controllerFor(uri, 900);
  t.after(() => { s.beforeApply = undefined; dispose(); });
  stub.ui.inputs.push('rewrite it');
  stub.ui.shown.length = 0;
  s.edits.length = 0;
  s.answers.length = 0;
  // The server's test gate (see ./server.js) holds the stream after its first edit; it is let on
  // for one more, and the cancel comes as that edit reaches the editor: mid-request, with an
  // edit in flight, however fast the model.
  s.holdFor(t);
  const run = controller.refineSelection();
  await waitFor(() => s.answers.length >= 1, 60000, 'the first streamed edit to be answered');
  const streamed = doc.text;
  s.beforeApply = () => stub.ui.progressCancel.cancel();
  await s.step();
  await within(run, 60000, 'the request to end');
  s.release();
  assert.notEqual(streamed, SOURCE, 'the first edit streamed into the region');
  assert.deepEqual(s.answers.map((a) => a.answer.applied), [true, false], 'the edit in flight at the cancel was refused');
  assert.match(s.answers[1].answer.failureReason, /cancelled/);
  assert.ok(stub.ui.shown.includes('CopySpec: cancelled'), `shown: ${stub.ui.shown}`);
  assert.equal(doc.text, SOURCE, 'the original is back');
  assert.equal(s.text(uri), SOURCE);
});
