// Protocol and end-to-end tests against the REAL Python server (tiny model, CPU).
// The first tests speak raw LSP with vscode-jsonrpc; the rest drive the extension's Controller,
// with only the VS Code window faked (./vscode-stub.js). Tests share one server, in order.
// Tests that act mid-stream hold the stream open with the server's test gate (s.holdFor, s.step
// in ./server.js): the real server honours it, so they act at a moment that cannot pass by,
// however fast the tiny model finishes.
'use strict';
const { stub, Range, Position, Selection, workspace } = require('./vscode-stub');
const test = require('node:test');
const assert = require('node:assert/strict');
const { CancellationTokenSource, ResponseError } = require('vscode-jsonrpc');
const { Controller } = require('../out/controller');
const { ChunkText } = require('../out/logic');
const { startServer, waitFor, within } = require('./server');

const SOURCE = 'def area(w, h):\n    return w * h\n\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n';
const REGION = { start: { line: 0, character: 0 }, end: { line: 1, character: 16 } };
const REQUEST_CANCELLED = -32800;

let s;
test.before(async () => {
  s = await startServer();
  await waitFor(async () => (await s.conn.sendRequest('copyspec/status', {})).state !== 'loading', 90000, 'the model to load');
}, { timeout: 180000 });
test.after(async () => { await s?.stop(); });

/** The document with `range` (in `before`) replaced by `text`. */
function replaced(before, range, text) {
  const lines = before.split('\n');
  const offset = (p) => lines.slice(0, p.line).reduce((n, l) => n + l.length + 1, 0) + p.character;
  return before.slice(0, offset(range.start)) + text + before.slice(offset(range.end));
}

test('copyspec/status reports a ready model with the contract keys', async () => {
  const status = await s.conn.sendRequest('copyspec/status', {});
  assert.equal(status.state, 'ready', JSON.stringify(status));
  for (const key of ['version', 'model', 'device', 'dtype', 'queue', 'sessions']) assert.ok(key in status, `missing ${key}`);
  assert.equal(status.device, 'cpu');
});

test('streamed applyEdits and chunks both rebuild exactly the final text', async () => {
  const uri = 'file:///tmp/stream.py';
  s.open(uri, SOURCE);
  s.edits.length = 0;
  s.chunks.length = 0;
  s.answers.length = 0;
  const versions = [];
  s.beforeApply = (p) => versions.push(s.docs.get(uri).version);
  const result = await s.conn.sendRequest('copyspec/refine',
    { textDocument: { uri }, range: REGION, instruction: 'add type hints', maxNewTokens: 120 })
    .finally(() => { s.beforeApply = undefined; });
  assert.ok(s.edits.length >= 2, `expected a stream of edits, got ${s.edits.length}`);
  // The client advertises documentChanges (as vscode-languageclient does): every edit is ONE
  // TextDocumentEdit stamped with the version the document had when the server computed it.
  for (const [i, e] of s.edits.entries()) {
    assert.equal(e.label, undefined, 'unlabelled');
    assert.equal(e.edit.changes, undefined, 'versioned, not `changes`');
    assert.equal(e.edit.documentChanges?.length, 1, JSON.stringify(e.edit));
    const [{ textDocument, edits }] = e.edit.documentChanges;
    assert.deepEqual(textDocument, { uri, version: versions[i] }, `edit ${i} is stamped with the current version`);
    assert.equal(edits.length, 1);
  }
  assert.ok(s.answers.every((a) => a.answer.applied), 'nothing was stale');
  // Minimal changes, not whole-region replacements: most leave the region's start untouched.
  const inner = s.edits.filter((e) => {
    const { start } = e.edit.documentChanges[0].edits[0].range;
    return start.line > REGION.start.line || start.character > REGION.start.character;
  });
  assert.ok(inner.length >= 1, `every edit rewrote the region from its start: ${JSON.stringify(s.edits)}`);
  assert.equal(s.text(uri), replaced(SOURCE, REGION, result.text));
  assert.deepEqual(result.range.start, REGION.start);
  const chunks = s.chunks.filter((c) => c.session === result.session);
  assert.ok(chunks.length >= 1);
  const rebuilt = new ChunkText();
  for (const c of chunks) rebuilt.apply(c); // throws on a lost chunk or a wrong length
  assert.equal(rebuilt.text, result.text, 'the changes rebuild the text');
  assert.equal(chunks[chunks.length - 1].final, true);
  assert.equal(chunks[chunks.length - 1].text, result.text);
  assert.ok(chunks.slice(0, -1).every((c) => c.text === undefined), 'only the last carries the whole text');
  for (const key of ['tokens_per_second', 'copied_share']) assert.equal(typeof chunks[0].stats[key], 'number', key);
  assert.ok(s.progress.some((p) => p.value?.kind === 'report' && /tok\/s/.test(p.value.message ?? '')), 'work-done progress with tok/s');
});

test('$/cancelRequest stops a streaming refine and no edit follows the answer', async () => {
  const uri = 'file:///tmp/cancel.py';
  s.open(uri, SOURCE);
  s.edits.length = 0;
  const cts = new CancellationTokenSource();
  // Cancel while the first streamed edit is being applied: the server is then surely mid-request
  // (waiting for this reply), however fast the tiny model finished generating.
  const hook = s.client.onRequest('workspace/applyEdit', (p) => {
    hook.dispose();
    cts.cancel();
    return s.applyToCopies(p.edit);
  });
  const pending = s.conn.sendRequest('copyspec/refine',
    { textDocument: { uri }, range: REGION, instruction: 'rewrite it', maxNewTokens: 900 }, cts.token);
  const outcome = await pending.then((r) => r, (e) => e);
  hook.dispose();
  const cancelled = (outcome instanceof ResponseError && outcome.code === REQUEST_CANCELLED) || outcome?.stats?.cancelled === true;
  assert.ok(cancelled, `the request finished instead of being cancelled: ${JSON.stringify(outcome)}`);
  const edits = s.edits.length;
  const text = s.text(uri);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(s.edits.length, edits, 'applyEdit after the cancel was answered');
  assert.equal(s.text(uri), text);
});

// ---- The extension's Controller, driven through the stubbed window ----

/** `maxNewTokens` makes the Controller's requests long enough to interrupt. */
function controllerFor(uri, text, selection, maxNewTokens) {
  const doc = stub.openEditor(uri, text, selection);
  s.open(uri, text);
  // What vscode-languageclient's document sync does for the real editor.
  const sync = workspace.onDidChangeTextDocument((e) => {
    if (e.document === doc) s.change(uri, e.contentChanges.map((c) => ({ range: c.range, newText: c.text })));
  });
  const statusBar = stub.statusBarItem();
  const rpc = maxNewTokens === undefined ? s.client
    : { ...s.client, sendRequest: (m, p, token) => s.client.sendRequest(m, { ...p, maxNewTokens }, token) };
  const controller = new Controller(rpc, statusBar, stub.outputChannel());
  return { doc, statusBar, controller, dispose: () => { sync.dispose(); controller.dispose(); } };
}

const selectRegion = () => new Selection(new Position(0, 0), new Position(1, 16));
/** Under a hold: once the stream's first edit is applied and answered, the server holds it. */
const firstEdit = () => waitFor(() => s.answers.length >= 1, 60000, 'the first streamed edit to be answered');
const lastRequest = (method) => s.sent.filter((r) => r.method === method).pop();
const textAt = (doc, r) => doc.getText(new Range(r.start.line, r.start.character, r.end.line, r.end.character));

test('Refine Selection streams into the buffer as ONE undo step, with tok/s progress', async (t) => {
  const uri = 'file:///tmp/ui-refine.py';
  const { doc, controller, dispose } = controllerFor(uri, SOURCE, selectRegion());
  t.after(dispose);
  s.edits.length = 0;
  stub.ui.inputs.push('add type hints');
  stub.ui.progress.length = 0;
  await controller.refineSelection();

  assert.ok(s.edits.length >= 2, `expected several streamed edits, got ${s.edits.length}`);
  assert.ok(stub.ui.progress.some((m) => /[1-9][0-9.]* tok\/s .* [1-9][0-9]* tokens/.test(m)), `progress messages: ${stub.ui.progress}`);
  const req = lastRequest('copyspec/refine');
  assert.equal(req.params.apply, 'stream');
  assert.deepEqual(req.params.range, REGION);
  const last = controller.sessions.get(uri);
  const text = textAt(doc, last.range);
  assert.equal(doc.text, replaced(SOURCE, REGION, text));
  assert.equal(s.text(uri), doc.text, 'the server saw every edit through didChange');
  assert.equal(doc.undoStack.length, 1, 'one undo step for the whole stream');
  doc.undo();
  assert.equal(doc.text, SOURCE);
});

test('Follow-up continues the same session on the region of the last answer', async (t) => {
  const uri = 'file:///tmp/ui-followup.py';
  const { doc, controller, dispose } = controllerFor(uri, SOURCE, selectRegion());
  t.after(dispose);
  stub.ui.inputs.push('add type hints', 'now make it shorter');
  await controller.refineSelection();
  const first = controller.sessions.get(uri);
  const afterFirst = doc.text;
  await controller.followUp();
  const req = lastRequest('copyspec/refine');
  assert.equal(req.params.session, first.session, 'the follow-up names the session');
  assert.deepEqual(req.params.range, first.range, 'on the region the first answer occupies');
  const second = controller.sessions.get(uri);
  assert.equal(second.session, first.session, 'the server continued the session');
  assert.equal(doc.text, replaced(afterFirst, first.range, textAt(doc, second.range)));
  assert.equal(doc.undoStack.length, 2, 'one undo step per turn');
  doc.undo();
  assert.equal(doc.text, afterFirst);
});

test('Cancel from the progress notification stops the stream; one undo restores the original', async (t) => {
  const uri = 'file:///tmp/ui-cancel.py';
  const { doc, controller, dispose } = controllerFor(uri, SOURCE, selectRegion(), 900);
  t.after(dispose);
  stub.ui.inputs.push('rewrite it');
  stub.ui.shown.length = 0;
  s.edits.length = 0;
  s.answers.length = 0;
  s.holdFor(t); // the stream holds after its first edit until the cancel
  const run = controller.refineSelection();
  await firstEdit();
  assert.notEqual(doc.text, SOURCE, 'the first edit streamed into the region');
  const requests = s.sent.length;
  stub.ui.inputs.push('a second request');
  await within(controller.refineSelection(), 10000, 'the second request to be turned down');
  assert.equal(s.sent.length, requests, 'no second request while one streams into the file');
  assert.ok(stub.ui.shown.some((m) => /already running/.test(m)), `shown: ${stub.ui.shown}`);
  stub.ui.progressCancel.cancel();
  await within(run, 60000, 'the request to end');
  s.release(); // a stream the cancel did not stop would go on now
  assert.ok(stub.ui.shown.includes('CopySpec: cancelled'), `shown: ${stub.ui.shown}`);
  const text = doc.text;
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(s.edits.length, 1, 'no edit after the cancel');
  assert.equal(doc.text, text, 'the buffer changed after the cancel');
  assert.equal(doc.text, SOURCE, 'the cancel put the original back');
  assert.equal(doc.undoStack.length, 1);
  doc.undo();
  assert.equal(doc.text, SOURCE);
});

test('With cancelKeepsPartial the partial answer stays after a cancel', async (t) => {
  const uri = 'file:///tmp/ui-keep.py';
  const { doc, controller, dispose } = controllerFor(uri, SOURCE, selectRegion(), 900);
  stub.settings.cancelKeepsPartial = true;
  t.after(() => { delete stub.settings.cancelKeepsPartial; dispose(); });
  stub.ui.inputs.push('rewrite it');
  stub.ui.shown.length = 0;
  s.edits.length = 0;
  s.answers.length = 0;
  s.holdFor(t); // the stream holds after its first edit until the cancel
  const run = controller.refineSelection();
  await firstEdit();
  const partial = doc.text;
  assert.notEqual(partial, SOURCE, 'the first edit streamed into the region');
  stub.ui.progressCancel.cancel();
  await within(run, 60000, 'the request to end');
  s.release();
  assert.ok(stub.ui.shown.includes('CopySpec: cancelled'), `shown: ${stub.ui.shown}`);
  assert.equal(doc.text, partial, 'the partial answer was kept as it was');
  doc.undo();
  assert.equal(doc.text, SOURCE, 'one undo still restores the original');
});

test('While streaming, the pending rest of the original is decorated below the streamed text', async (t) => {
  const uri = 'file:///tmp/ui-pending.py';
  const { doc, controller, dispose } = controllerFor(uri, SOURCE, selectRegion(), 60);
  t.after(dispose);
  stub.ui.inputs.push('add type hints');
  s.pending.length = 0;
  s.edits.length = 0;
  s.answers.length = 0;
  stub.decorations.clear(); // only this stream's decorations count
  const pendingRest = () => [...stub.decorations.values()].some((texts) => texts.length && texts[0].includes('return w * h'));
  s.holdFor(t); // looked at while the stream holds after its first edit
  const run = controller.refineSelection();
  await firstEdit();
  assert.notEqual(doc.text, SOURCE, 'the first edit streamed into the region');
  const announced = s.pending.filter((p) => p.uri === uri && p.range);
  assert.ok(announced.length > 0, 'the server announced pending lines');
  assert.ok(pendingRest(), `the original rest is decorated while streaming: ${JSON.stringify([...stub.decorations.values()])}`);
  s.release();
  await within(run, 60000, 'the request to end');
  const streamTypes = [...stub.decorations.keys()].filter((type) => !type.options.overviewRulerLane && !type.options.after);
  assert.ok(streamTypes.every((type) => stub.decorations.get(type).length === 0), 'no stream decoration left at the end');
});

test('Preview mode: nothing reaches the buffer; its hunks are reviewed against the original; Accept all is one undo step', async (t) => {
  const uri = 'file:///tmp/ui-preview.py';
  const { doc, controller, dispose } = controllerFor(uri, SOURCE, selectRegion(), 40);
  stub.settings.applyMode = 'preview';
  t.after(() => { delete stub.settings.applyMode; dispose(); });
  s.scriptFor(t, 'def area(w: float, h: float) -> float:\n    return w * h\n');
  stub.decorations.clear(); // only this controller's decorations count
  stub.ui.inputs.push('add type hints');
  s.edits.length = 0;
  await controller.refineSelection();
  assert.equal(lastRequest('copyspec/refine').params.apply, 'none');
  assert.equal(s.edits.length, 0, 'no applyEdit');
  assert.equal(doc.text, SOURCE, 'buffer untouched before Accept');
  assert.equal(stub.threads.size, 0, 'the streaming zone is gone once the answer is complete');
  assert.deepEqual(controller.review.hunks(uri).map((h) => [h.start, h.end, h.shown, h.other]),
    [[0, 1, ['def area(w, h):'], ['def area(w: float, h: float) -> float:']]]);
  assert.equal(stub.context['copyspec.reviewing'], true);
  const removedType = [...stub.decorations.keys()].find((type) => type.options.overviewRulerLane && !type.options.after
    && type.options.backgroundColor.id === 'diffEditor.removedLineBackground');
  assert.deepEqual(stub.decorations.get(removedType), ['def area(w, h):'], 'the original line is marked removed');
  assert.ok([...stub.beside.values()].flat().includes('+ def area(w: float, h: float) -> float:'), 'the new line is shown beside it');
  await controller.acceptAll();
  assert.equal(doc.text, SOURCE.replace('def area(w, h):', 'def area(w: float, h: float) -> float:'));
  assert.equal(stub.context['copyspec.reviewing'], false);
  doc.undo();
  assert.equal(doc.text, SOURCE, 'one undo reverts the accepted hunks');
  stub.ui.inputs.push('add type hints');
  await controller.refineSelection();
  await controller.rejectAll();
  assert.equal(doc.text, SOURCE, 'reject leaves the buffer');
  assert.equal(controller.review.hunks(uri).length, 0);
});

test('The refine code action asks for the instruction; the fix action carries the diagnostic', async (t) => {
  const uri = 'file:///tmp/ui-action.py';
  const { controller, dispose } = controllerFor(uri, SOURCE, selectRegion(), 40);
  t.after(dispose);
  stub.ui.inputs.push('rename w');
  await controller.refineAction({ uri, range: REGION });
  assert.equal(lastRequest('copyspec/refine').params.instruction, 'rename w');
  const diagnostic = { range: REGION, message: 'bad thing', severity: 1 };
  await controller.fixAction({ uri, range: REGION, diagnostics: [diagnostic] });
  assert.deepEqual(lastRequest('copyspec/fix').params.diagnostics, [diagnostic]);
});

test('Typing inside the region mid-stream: the server cancels and the typing survives', async (t) => {
  const uri = 'file:///tmp/ui-typed.py';
  const { doc, controller, dispose } = controllerFor(uri, SOURCE, selectRegion(), 900);
  t.after(dispose);
  stub.ui.inputs.push('rewrite it');
  stub.ui.shown.length = 0;
  s.edits.length = 0;
  s.answers.length = 0;
  s.holdFor(t); // the stream holds after its first edit; only the typing can stop it
  const run = controller.refineSelection();
  await firstEdit();
  assert.notEqual(doc.text, SOURCE, 'the first edit streamed into the region');
  const typed = doc.text.slice(0, 1) + 'MINE' + doc.text.slice(1);
  doc.type(new Range(0, 1, 0, 1), 'MINE'); // inside the streamed text
  await within(run, 60000, 'the request to end');
  s.release(); // a stream the typing did not stop would go on now
  assert.ok(stub.ui.shown.some((m) => /CopySpec: .*(edited|changed|did not apply)/.test(m)), `shown: ${stub.ui.shown}`);
  assert.equal(doc.text, typed, 'the typing is intact and nothing was written after it');
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(s.edits.length, 1, 'no edit after the typing');
  assert.equal(doc.text, typed, 'no edit after the cancel');
});

/** Plays the user typing `text` at the top of the file (above the region) when the server's
 * `nth` applyEdit reaches the editor: that edit was computed for the version before it. */
function typeAboveWhenEdit(doc, nth, text) {
  const typed = { at: undefined };
  s.beforeApply = (p) => {
    if (typed.at !== undefined || s.edits.length < nth) return;
    typed.at = s.edits.length - 1;
    doc.type(new Range(0, 0, 0, 0), text);
  };
  return typed;
}

test('An edit made stale by typing is refused untouched; the server computes it again; typing and answer both end up in the buffer', async (t) => {
  const uri = 'file:///tmp/ui-stale.py';
  const { doc, controller, dispose } = controllerFor(uri, SOURCE, selectRegion(), 120);
  t.after(() => { s.beforeApply = undefined; dispose(); });
  stub.ui.inputs.push('add type hints');
  stub.ui.shown.length = 0;
  s.edits.length = 0;
  s.answers.length = 0;
  const typed = typeAboveWhenEdit(doc, 2, '# mine\n');
  // Held after its first edit, the stream is let on for one more, which meets the typing; it
  // holds again once that edit is computed again and applied, and then runs to its end.
  s.holdFor(t);
  const run = controller.refineSelection();
  await firstEdit();
  await s.step();
  s.release();
  await within(run, 60000, 'the request to end');

  assert.equal(typed.at, 1, `the typing came with the second edit: ${s.edits.length} edits`);
  const refused = s.answers.filter((a) => !a.answer.applied);
  assert.equal(refused.length, 1, `answers: ${JSON.stringify(s.answers.map((a) => a.answer))}`);
  assert.equal(refused[0].edit, s.edits[typed.at], 'the edit that arrived after the typing was refused');
  assert.match(refused[0].answer.failureReason, /version/);
  const version = (e) => e.edit.documentChanges[0].textDocument.version;
  const retry = s.edits[typed.at + 1];
  assert.ok(retry, 'the server computed the edit again');
  assert.ok(version(retry) > version(s.edits[typed.at]), 'against the newer version');
  assert.ok(s.answers.slice(typed.at + 1).every((a) => a.answer.applied), 'every later edit applied');

  const last = controller.sessions.get(uri);
  assert.equal(last.range.start.line, 1, 'the region moved down with the typing above it');
  const answer = textAt(doc, last.range);
  assert.equal(doc.text, '# mine\n' + replaced(SOURCE, REGION, answer), 'the typing, then the answer in the region');
  assert.equal(s.text(uri), doc.text, 'the server saw the same text');
  assert.ok(!stub.ui.shown.some((m) => /did not apply|edited/.test(m)), `shown: ${stub.ui.shown}`);
  // The stream is undone apart from the typing: undoing the refinement never undoes it.
  doc.undo();
  assert.ok(doc.text.startsWith('# mine\n'), `one undo took the typing away: ${JSON.stringify(doc.text)}`);
});

test('Cancel after a stale edit was refused and computed again restores the original where the region moved to', async (t) => {
  const uri = 'file:///tmp/ui-stale-cancel.py';
  const { doc, controller, dispose } = controllerFor(uri, SOURCE, selectRegion(), 900);
  t.after(() => { s.beforeApply = undefined; dispose(); });
  stub.ui.inputs.push('rewrite it');
  stub.ui.shown.length = 0;
  s.edits.length = 0;
  s.answers.length = 0;
  const typed = typeAboveWhenEdit(doc, 2, '# mine\n');
  // Held after its first edit, the stream is let on for one more, which meets the typing; the
  // server computes it again and holds once that is applied: the cancel comes then, so the last
  // applied edit is surely the recomputed one.
  s.holdFor(t);
  const run = controller.refineSelection();
  await firstEdit();
  await s.step();
  await waitFor(() => s.answers.length >= 3, 60000, 'the refused edit to be computed again and answered');
  const streamed = doc.text;
  stub.ui.progressCancel.cancel();
  await within(run, 60000, 'the request to end');
  s.release();
  assert.equal(typed.at, 1, `the typing came with the second edit: ${s.edits.length} edits`);
  assert.deepEqual(s.answers.map((a) => a.answer.applied), [true, false, true],
    'applied, refused as stale, computed again and applied; nothing after the cancel');
  assert.match(s.answers[1].answer.failureReason, /version/);
  assert.ok(streamed.startsWith('# mine\n') && streamed !== '# mine\n' + SOURCE, `streamed text in the region: ${JSON.stringify(streamed)}`);
  assert.ok(stub.ui.shown.includes('CopySpec: cancelled'), `shown: ${stub.ui.shown}`);
  assert.equal(doc.text, '# mine\n' + SOURCE, 'the original is back below the typing');
  assert.equal(s.text(uri), doc.text);
});

test('Fix Error at Cursor sends the diagnostics and an empty range the server widens', async (t) => {
  const uri = 'file:///tmp/ui-fix.py';
  const broken = 'def total(xs):\n    return sum(ys)\n\n\nx = 1\n';
  const cursor = new Position(1, 12);
  // A short answer per turn keeps all three turns inside the tiny model's 1024-token window.
  const { doc, controller, dispose } = controllerFor(uri, broken, new Selection(cursor, cursor), 40);
  t.after(dispose);
  stub.diagnostics.set(uri, [{ range: new Range(1, 15, 1, 17), message: "undefined name 'ys'", severity: 0, source: 'test' }]);
  await controller.fixAtCursor();
  const req = lastRequest('copyspec/fix');
  assert.deepEqual(req.params.range, { start: { line: 1, character: 12 }, end: { line: 1, character: 12 } });
  assert.deepEqual(req.params.diagnostics, [{ range: { start: { line: 1, character: 15 }, end: { line: 1, character: 17 } },
    message: "undefined name 'ys'", severity: 1, source: 'test' }]);
  const last = controller.sessions.get(uri);
  assert.equal(last.range.start.line, 0, 'widened to the enclosing function');
  assert.ok(doc.text.endsWith('\n\n\nx = 1\n'), 'code after the enclosing function is untouched');
  assert.equal(doc.undoStack.length, 1, 'all turns of the fix are one undo step');
  doc.undo();
  assert.equal(doc.text, broken);
});

test('Edits of a code action command (no UI request) are applied too', async (t) => {
  const uri = 'file:///tmp/ui-command.py';
  const { doc, dispose } = controllerFor(uri, SOURCE, selectRegion());
  t.after(dispose);
  const result = await s.conn.sendRequest('workspace/executeCommand', { command: 'copyspec.refine',
    arguments: [{ textDocument: { uri }, range: REGION, instruction: 'add type hints', maxNewTokens: 40 }] });
  assert.equal(doc.text, replaced(SOURCE, REGION, result.text));
  assert.equal(s.text(uri), doc.text);
});

test('Show Status fills the status bar with the model and its state', async (t) => {
  const { statusBar, controller, dispose } = controllerFor('file:///tmp/ui-status.py', 'x = 1\n', selectRegion());
  t.after(dispose);
  await controller.showStatus();
  assert.equal(statusBar.text, 'CopySpec: model (ready)');
  assert.match(statusBar.tooltip, /on cpu/);
});

test('Cancel with nothing running says so', () => {
  const { controller, dispose } = controllerFor('file:///tmp/ui-idle.py', 'x = 1\n', selectRegion());
  stub.ui.shown.length = 0;
  controller.cancel();
  dispose();
  assert.deepEqual(stub.ui.shown, ['CopySpec: nothing running.']);
});
