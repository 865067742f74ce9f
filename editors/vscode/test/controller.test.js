// The Controller's handling of workspace/applyEdit and copyspec/pending, against a scripted
// server: each edit and announcement is built here the way copyspec_lsp/adapters/buffer_edits.py and
// pending.py build them (the minimal change inside the region; `before` / `after`), so every
// ordering, including the ones a real model makes rare, is tested exactly. The stubbed
// window is ./vscode-stub.js; protocol.test.js runs the same code against the real server.
'use strict';
const { stub, Range, Position, Selection } = require('./vscode-stub');
const test = require('node:test');
const assert = require('node:assert/strict');
const { Controller } = require('../out/controller');
const { waitFor } = require('./server');

const SOURCE = 'def area(w, h):\n    return w * h\n\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n';
const REGION_END = SOURCE.indexOf('\n\n\n'); // the first function, without its line break

/** LSP position of string offset `offset` in `text` (no astral characters in these tests). */
function pos(text, offset) {
  const lines = text.slice(0, offset).split('\n');
  return { line: lines.length - 1, character: lines[lines.length - 1].length };
}
const span = (text, start, end) => ({ start: pos(text, start), end: pos(text, end) });

/** A connection whose requests the test answers and whose server side it plays. */
function fakeRpc() {
  const handlers = {};
  const requests = [];
  return {
    requests,
    sendRequest(method, params, token) {
      return new Promise((resolve, reject) => {
        requests.push({ method, params, resolve, reject });
        token?.onCancellationRequested(() => reject(Object.assign(new Error('cancelled'), { code: -32800 })));
      });
    },
    onNotification(method, handler) { handlers[method] = handler; return { dispose() {} }; },
    onRequest(method, handler) { handlers[method] = handler; return { dispose() {} }; },
    notify(method, params) { handlers[method](params); },
    applyEdit(edit) { return handlers['workspace/applyEdit']({ edit }); },
  };
}

/**
 * The server's view of a region [start, end) of `doc` (string offsets). `edit(text)` announces
 * and returns the edit that makes the region read `text`, computed against the document as it
 * is now and stamped with its version (or as `changes`); `moved(by)` follows a change above it.
 */
function region(rpc, doc, start, end) {
  const r = { start, end };
  r.moved = (by) => { r.start += by; r.end += by; };
  r.edit = (text, { pendingAt, versioned = true, version = doc.version } = {}) => {
    const now = doc.text;
    const old = now.slice(r.start, r.end);
    let head = 0;
    while (head < old.length && head < text.length && old[head] === text[head]) head++;
    let tail = 0;
    while (tail < old.length - head && tail < text.length - head && old[old.length - 1 - tail] === text[text.length - 1 - tail]) tail++;
    const after = now.slice(0, r.start) + text + now.slice(r.end);
    rpc.notify('copyspec/pending', {
      uri: doc.uri.toString(), session: 's1',
      range: pendingAt === undefined ? null : span(after, r.start + pendingAt, r.start + text.length),
      before: span(now, r.start, r.end), after: span(after, r.start, r.start + text.length),
    });
    const change = { range: span(now, r.start + head, r.end - tail), newText: text.slice(head, text.length - tail) };
    const uri = doc.uri.toString();
    return {
      edit: versioned ? { documentChanges: [{ textDocument: { uri, version }, edits: [change] }] } : { changes: { [uri]: [change] } },
      /** The region once this edit is applied. */
      applied: () => { r.end = r.start + text.length; },
    };
  };
  return r;
}

/** Starts Refine Selection on the first function of a fresh editor; returns the pieces. */
async function refining(name) {
  const uri = `file:///tmp/ctl-${name}.py`;
  const doc = stub.openEditor(uri, SOURCE, new Selection(new Position(0, 0), new Position(1, 16)));
  const rpc = fakeRpc();
  const controller = new Controller(rpc, stub.statusBarItem(), stub.outputChannel());
  stub.ui.inputs.push('add type hints');
  stub.ui.shown.length = 0;
  const run = controller.refineSelection();
  await waitFor(() => rpc.requests.some((r) => r.method === 'copyspec/refine'), 5000, 'the refine request');
  const request = rpc.requests.find((r) => r.method === 'copyspec/refine');
  return { uri, doc, rpc, controller, run, request, region: region(rpc, doc, 0, REGION_END) };
}

/** Applies `step` (from region.edit) through the Controller; asserts the answer. */
async function apply(rpc, step, applied = true) {
  const answer = await rpc.applyEdit(step.edit);
  assert.equal(answer.applied, applied, JSON.stringify(answer));
  if (applied) step.applied();
  return answer;
}

/** The texts the stream decorations of `controller`'s editor show now, by decoration kind. */
function decorated() {
  const shown = [...stub.decorations.entries()].filter(([, texts]) => texts.length);
  return shown.map(([type, texts]) => [type.options.opacity ? 'pending' : 'streamed', texts.join('|')]);
}

test('A stale TextDocumentEdit is refused untouched and uses up its announcement; the next one lands where the region moved', async (t) => {
  const { doc, rpc, controller, run, request, region: r } = await refining('stale');
  t.after(() => controller.dispose());
  const first = 'def area(w: float, h):\n    return w * h';
  await apply(rpc, r.edit(first, { pendingAt: first.indexOf('    return') }));
  assert.equal(doc.text, first + SOURCE.slice(REGION_END));
  // The server computes the next edit, then the user types above the region before it lands.
  const stale = r.edit('def area(w: float, h: float):\n    return w * h', { pendingAt: 30 });
  doc.type(new Range(0, 0, 0, 0), '# mine\n');
  const typed = doc.text;
  const answer = await apply(rpc, stale, false);
  assert.match(answer.failureReason, /version/);
  assert.equal(doc.text, typed, 'nothing of the stale edit was applied');
  // Computed again against the newer text (the server followed the typing).
  r.moved('# mine\n'.length);
  const answer2 = 'def area(w: float, h: float) -> float:\n    return w * h';
  await apply(rpc, r.edit(answer2));
  assert.equal(doc.text, '# mine\n' + answer2 + SOURCE.slice(REGION_END));
  assert.deepEqual(decorated(), [['streamed', answer2]], 'the streamed lines start at the moved region');
  // Had the refused edit not used up its announcement, this one's `after` would be the stale
  // edit's and the cancel below would find the region elsewhere and leave it alone.
  stub.ui.progressCancel.cancel();
  await run;
  assert.equal(doc.text, '# mine\n' + SOURCE, 'cancel put the original back under the typing');
  assert.deepEqual(decorated(), [], 'no decoration left');
  assert.equal(request.params.apply, 'stream');
});

test('A `changes` edit (a server without versioning) is applied as given; the stream and its cancel are one undo step', async (t) => {
  const { doc, rpc, controller, run, region: r } = await refining('changes');
  t.after(() => controller.dispose());
  // What pending.while_streaming shows: the answer so far, then the original lines not passed.
  const steps = [
    ['def area(w: int\ndef area(w, h):\n    return w * h', 16],
    ['def area(w: int, h: int):\n\n    return w * h', 27],
    ['def area(w: int, h: int):\n    return w * h  # area', undefined],
  ];
  for (const [shown, pendingAt] of steps) {
    await apply(rpc, r.edit(shown, { versioned: false, pendingAt }));
    assert.equal(doc.text, shown + SOURCE.slice(REGION_END));
  }
  assert.equal(doc.undoStack.length, 1, 'one undo step so far');
  stub.ui.progressCancel.cancel();
  await run;
  assert.equal(doc.text, SOURCE);
  assert.equal(doc.undoStack.length, 1, 'the restore joined the stream');
  doc.undo();
  assert.equal(doc.text, SOURCE);
});

test('While streaming, the streamed lines run from the region\'s first line to the pending ones', async (t) => {
  const { doc, rpc, controller, run, request, region: r } = await refining('decorations');
  t.after(() => controller.dispose());
  doc.type(new Range(0, 0, 0, 0), '\n\n'); // the region now starts on line 2
  r.moved(2);
  const streamed = '# Area.\ndef area(w, h):\n';
  const rest = SOURCE.slice(0, REGION_END).split('\n')[1];
  await apply(rpc, r.edit(streamed + rest, { pendingAt: streamed.length }));
  assert.deepEqual(decorated(), [['streamed', '# Area.\ndef area(w, h):'], ['pending', rest]]);
  const final = '# Area.\ndef area(w, h):\n    return w * h';
  await apply(rpc, r.edit(final));
  request.resolve({ session: 's1', text: final, range: span(doc.text, 2, 2 + final.length), stats: {} });
  await run;
  assert.deepEqual(decorated(), [], 'cleared at the end');
  assert.equal(doc.text, '\n\n' + final + SOURCE.slice(REGION_END));
  assert.ok(stub.ui.shown.some((m) => /CopySpec: done/.test(m)), `shown: ${stub.ui.shown}`);
});

test('Cancel leaves the region alone once the user typed inside it; edits after the cancel are refused', async (t) => {
  const { doc, rpc, controller, run, region: r } = await refining('typed');
  t.after(() => controller.dispose());
  await apply(rpc, r.edit('def area(w: int, h: int):\n    return w * h'));
  doc.type(new Range(1, 4, 1, 4), 'MINE ');
  const typed = doc.text;
  stub.ui.progressCancel.cancel();
  // An edit the server sent before it saw the cancel arrives before the request's answer.
  const late = apply(rpc, r.edit('whatever'), false);
  await run;
  assert.match((await late).failureReason, /cancelled/);
  assert.equal(doc.text, typed, 'the typing stays and nothing was restored over it');
});

test('Keys that reach the extension with an edit\'s answer stay the user\'s: the next edit does not join their undo step', async (t) => {
  const { doc, rpc, controller, run, region: r } = await refining('batched-undo');
  t.after(() => controller.dispose());
  // The edit is applied, then the user's newline above the region comes in before the answer.
  stub.afterEdit.hook = (d) => d.type(new Range(0, 0, 0, 0), '\n');
  const first = 'def area(w: int, h):\n    return w * h';
  await apply(rpc, r.edit(first));
  r.moved(1); // the server follows the newline too
  const answer = 'def area(w: int, h: int):\n    return w * h';
  await apply(rpc, r.edit(answer));
  assert.equal(doc.text, '\n' + answer + SOURCE.slice(REGION_END));
  doc.undo();
  assert.equal(doc.text, '\n' + first + SOURCE.slice(REGION_END), 'one undo takes the second edit, not the newline');
  stub.ui.progressCancel.cancel();
  await run;
});

test('Keys that reach the extension with an edit\'s answer move the region: cancel restores where it went', async (t) => {
  const { doc, rpc, controller, run, region: r } = await refining('batched-cancel');
  t.after(() => controller.dispose());
  stub.afterEdit.hook = (d) => d.type(new Range(0, 0, 0, 0), '\n');
  await apply(rpc, r.edit('def area(w: int, h):\n    return w * h'));
  stub.ui.progressCancel.cancel();
  await run;
  assert.equal(doc.text, '\n' + SOURCE, 'the original is back, below the newline');
});

test('Edits outside a running job work in both forms; a stale versioned one is refused whole', async () => {
  const uri = 'file:///tmp/ctl-plain.py';
  const doc = stub.openEditor(uri, 'a = 1\nb = 2\n', new Selection(new Position(0, 0), new Position(0, 0)));
  const rpc = fakeRpc();
  const controller = new Controller(rpc, stub.statusBarItem(), stub.outputChannel());
  try {
    const at = (l, c, l2, c2) => ({ start: { line: l, character: c }, end: { line: l2, character: c2 } });
    assert.deepEqual(await rpc.applyEdit({ changes: { [uri]: [{ range: at(0, 4, 0, 5), newText: '10' }] } }), { applied: true });
    assert.equal(doc.text, 'a = 10\nb = 2\n');
    const versioned = (version) => ({ documentChanges: [{ textDocument: { uri, version },
      edits: [{ range: at(0, 0, 0, 1), newText: 'x' }, { range: at(1, 0, 1, 1), newText: 'y' }] }] });
    const stale = await rpc.applyEdit(versioned(doc.version - 1));
    assert.equal(stale.applied, false);
    assert.match(stale.failureReason, /version/);
    assert.equal(doc.text, 'a = 10\nb = 2\n', 'nothing applied');
    assert.deepEqual(await rpc.applyEdit(versioned(doc.version)), { applied: true });
    assert.equal(doc.text, 'x = 10\ny = 2\n', 'both edits, ranges in the document before the edit');
    assert.deepEqual(await rpc.applyEdit(versioned(null)), { applied: true }, 'a null version names none');
    const made = await rpc.applyEdit({ documentChanges: [{ kind: 'create', uri: 'file:///tmp/ctl-new.py' }] });
    assert.deepEqual(made, { applied: true });
    assert.equal(stub.fileOps.at(-1).kind, 'create');
  } finally {
    controller.dispose();
  }
});
